package deploy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"golang.org/x/crypto/bcrypt"

	"github.com/sdevents/sdevents/deploy/natsusers"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/streams"
)

// sdeventsServices are the compose services that run an sdevents service, by
// their target (the command); the one-shot "streams" runs the image too.
var sdeventsServices = []string{"ingress", "quota", "archiver", "aggregator", "console"}

// loadCompose loads compose.yaml with the Compose specification's loader
// (schema validation, interpolation, merge keys, path resolution), with an
// empty environment so that the result does not depend on the machine.
func loadCompose(t *testing.T, file, workdir string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(workdir),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

// TestComposeLoads loads compose.yaml and checks that every file it names
// (configs, secrets, the build context's Dockerfile) exists in the repository.
func TestComposeLoads(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p, err := loadCompose(t, filepath.Join(root, "compose.yaml"), root)
	if err != nil {
		t.Fatal(err)
	}
	exists := func(what, f string) {
		t.Helper()
		if !strings.HasPrefix(f, root+string(filepath.Separator)) {
			t.Errorf("%s %s is outside the repository", what, f)
		}
		if st, err := os.Stat(f); err != nil || st.IsDir() {
			t.Errorf("%s %s: not a file in the repository (%v)", what, f, err)
		}
	}
	for name, c := range p.Configs {
		exists("config "+name, c.File)
	}
	for name, s := range p.Secrets {
		exists("secret "+name, s.File)
	}
	for _, s := range p.Services {
		if s.Build != nil {
			exists("service "+s.Name+" Dockerfile", filepath.Join(s.Build.Context, s.Build.Dockerfile))
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s binds %s: %v", s.Name, v.Source, err)
				}
			}
		}
	}
	for _, want := range append([]string{"nats-1", "nats-2", "nats-3", "minio", "minio-init", "streams"}, sdeventsServices...) {
		if _, ok := p.Services[want]; !ok {
			t.Errorf("service %s is missing", want)
		}
	}
}

// TestComposeRejectsUnknownKeys shows that the loader validates against the
// Compose schema, so that TestComposeLoads would catch a misspelt key.
func TestComposeRejectsUnknownKeys(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	src := strings.Replace(string(readFile(t, "compose.yaml")), "\n  ingress:\n", "\n  ingress:\n    read_onyl: true\n", 1)
	f := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCompose(t, f, root); err == nil || !strings.Contains(err.Error(), "read_onyl") {
		t.Fatalf("loading a file with an unknown key: err = %v, want one naming read_onyl", err)
	}
}

// TestComposeServices checks the sdevents services: one image built from the
// repository, the target as command, the health check the distroless image
// can run, the archiver's two replicas, and above all that each service's
// configuration — sdevents.example.yaml as mounted, its SDEVENTS_* variables
// and its secret files — is accepted by pkg/config with the external NATS.
func TestComposeServices(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p, err := loadCompose(t, filepath.Join(root, "compose.yaml"), root)
	if err != nil {
		t.Fatal(err)
	}
	example := readFile(t, "sdevents.example.yaml")
	image := ""
	for _, name := range sdeventsServices {
		t.Run(name, func(t *testing.T) {
			s := p.Services[name]
			if image == "" {
				image = s.Image
			}
			if s.Image != image || s.Build == nil || s.Build.Context != root {
				t.Errorf("image %q built from %v: want every sdevents service on one image built from the repository", s.Image, s.Build)
			}
			if len(s.Command) == 0 || s.Command[0] != name {
				t.Errorf("command %v: want [%s]", s.Command, name)
			}
			if hc := s.HealthCheck; hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Test[1] != "/healthcheck" {
				t.Errorf("healthcheck %v: want [CMD /healthcheck <url>] (no shell in the image)", hc)
			}
			// The services' users may not manage streams: the one-shot
			// "streams" applies the definitions first.
			if dep, ok := s.DependsOn["streams"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
				t.Error("does not wait for the stream definitions (streams) to be applied")
			}
			if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
				t.Errorf("read_only %v, cap_drop %v: want a read-only root and no capabilities", s.ReadOnly, s.CapDrop)
			}

			files := map[string][]byte{}
			for _, c := range s.Configs {
				files[c.Target] = readAbs(t, p.Configs[c.Source].File)
			}
			for _, sec := range s.Secrets {
				target := sec.Target
				if target == "" {
					target = "/run/secrets/" + sec.Source
				}
				files[target] = readAbs(t, p.Secrets[sec.Source].File)
			}
			env := map[string]string{}
			for k, v := range s.Environment {
				if v != nil {
					env[k] = *v
				}
			}
			if got := files[env["SDEVENTS_CONFIG"]]; string(got) != string(example) {
				t.Errorf("SDEVENTS_CONFIG %q: want sdevents.example.yaml mounted there", env["SDEVENTS_CONFIG"])
			}
			cfg, err := loadConfigAs(t, files, env, env["SDEVENTS_CONFIG"])
			if err != nil {
				t.Fatalf("the service's configuration does not load: %v", err)
			}
			if cfg.NATS.URL == "" || cfg.NATS.Replicas != 3 {
				t.Errorf("nats.url %q, nats.replicas %d: want the three-node cluster with R3 streams", cfg.NATS.URL, cfg.NATS.Replicas)
			}
			for _, u := range strings.Split(cfg.NATS.URL, ",") {
				host := strings.TrimPrefix(strings.Split(u, ":")[1], "//")
				if _, ok := p.Services[host]; !ok {
					t.Errorf("nats.url names %s, not a service", host)
				}
			}
			if _, port, _ := strings.Cut(cfg.HTTP.Addr, ":"); !strings.HasPrefix(cfg.HTTP.Addr, "0.0.0.0:") || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), ":"+port+"/") {
				t.Errorf("http.addr %s: want 0.0.0.0 and the health check on its port", cfg.HTTP.Addr)
			}
			checkNATSUser(t, p, s, cfg, name)
			switch name {
			case "quota":
				if cfg.Admin.Token.Reveal() == "" {
					t.Error("quota has no admin token: the admin API is off")
				}
			case "console":
				if cfg.Admin.Token.Reveal() == "" {
					t.Error("the console has no admin token: it refuses to start")
				}
				if s3 := cfg.Archive.S3; s3.Endpoint != "minio:9000" || s3.SecretKey.Reveal() == "" {
					t.Errorf("archive.s3 %+v: the console reads thumbnails from MinIO", s3)
				}
			case "archiver":
				if s.Deploy == nil || s.Deploy.Replicas == nil || *s.Deploy.Replicas != 2 {
					t.Errorf("deploy %+v: want replicas: 2", s.Deploy)
				}
				s3 := cfg.Archive.S3
				if _, ok := p.Services[strings.Split(s3.Endpoint, ":")[0]]; !ok || s3.SecretKey.Reveal() == "" {
					t.Errorf("archive.s3 %+v: want the minio service and a secret key", s3)
				}
				checkMinIO(t, p, s3.AccessKey, s3.SecretKey.Reveal(), s3.Bucket)
			default:
				if cfg.Admin.Token.Reveal() != "" {
					t.Error("an admin token is configured outside quota")
				}
			}
		})
	}
}

// TestComposeStreamsApply checks the one-shot that applies the stream
// definitions: `sdevents streams apply` from the services' image, as the
// NATS admin, with R3, once the three nodes are healthy, never restarted.
func TestComposeStreamsApply(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p, err := loadCompose(t, filepath.Join(root, "compose.yaml"), root)
	if err != nil {
		t.Fatal(err)
	}
	s := p.Services["streams"]
	if s.Image != p.Services["ingress"].Image || !slices.Equal(s.Command, []string{"streams", "apply"}) {
		t.Errorf("streams runs %s %v, want the sdevents image with [streams apply]", s.Image, s.Command)
	}
	if s.Restart != "no" || s.HealthCheck == nil || !s.HealthCheck.Disable {
		t.Errorf("restart %q, health check %+v: want a one-shot (restart no, no health check)", s.Restart, s.HealthCheck)
	}
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		if dep, ok := s.DependsOn[n]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("streams does not wait for %s to be healthy", n)
		}
	}
	cfg, err := serviceConfig(t, p, s)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.Replicas != 3 {
		t.Errorf("nats.replicas %d, want 3", cfg.NATS.Replicas)
	}
	checkNATSUser(t, p, s, cfg, "admin")
}

// checkNATSUser checks that a service connects to NATS as user, with the
// password of deploy/compose/nats-users.conf, and mounts no other user's
// password.
func checkNATSUser(t *testing.T, p *types.Project, s types.ServiceConfig, cfg config.Config, user string) {
	t.Helper()
	if cfg.NATS.User != user {
		t.Errorf("nats.user %q, want %q", cfg.NATS.User, user)
	}
	hashes, err := natsusers.Passwords(readAbs(t, p.Configs["nats-users"].File))
	if err != nil {
		t.Fatal(err)
	}
	if bcrypt.CompareHashAndPassword([]byte(hashes[user]), []byte(cfg.NATS.Password.Reveal())) != nil {
		t.Errorf("the password of nats.password_file is not %s's in nats-users.conf", user)
	}
	for _, sec := range s.Secrets {
		if strings.HasPrefix(sec.Source, "nats-") && sec.Source != "nats-"+user {
			t.Errorf("mounts the secret %s of another NATS user", sec.Source)
		}
	}
}

// checkMinIO checks that MinIO's root credentials are the archiver's and that
// minio-init creates its bucket.
func checkMinIO(t *testing.T, p *types.Project, accessKey, secretKey, bucket string) {
	t.Helper()
	m := p.Services["minio"]
	if u := m.Environment["MINIO_ROOT_USER"]; u == nil || *u != accessKey {
		t.Errorf("MINIO_ROOT_USER %v: want the archiver's access key %q", u, accessKey)
	}
	pw := m.Environment["MINIO_ROOT_PASSWORD_FILE"]
	if pw == nil {
		t.Fatal("minio has no MINIO_ROOT_PASSWORD_FILE")
	}
	for _, sec := range m.Secrets {
		if "/run/secrets/"+sec.Source == *pw && string(readAbs(t, p.Secrets[sec.Source].File)) != secretKey {
			t.Errorf("MinIO's password (%s) is not the archiver's secret key", sec.Source)
		}
	}
	init := strings.Join(p.Services["minio-init"].Command, " ")
	if !strings.Contains(init, "mc mb --ignore-existing local/"+bucket) {
		t.Errorf("minio-init %q does not create the bucket %s", init, bucket)
	}
	if dep, ok := p.Services["archiver"].DependsOn["minio-init"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Error("archiver does not wait for minio-init to complete")
	}
}

// TestComposeNATS checks the JetStream cluster: three nodes of the server
// version the tests run, routed to each other, each with a health check, and
// a max_payload that fits INGRESS's largest message.
func TestComposeNATS(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p, err := loadCompose(t, filepath.Join(root, "compose.yaml"), root)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(readAbs(t, p.Configs["nats"].File))
	if !regexp.MustCompile(`(?m)^include "nats-users.conf"$`).MatchString(conf) {
		t.Error(`nats.conf does not include "nats-users.conf": the servers would take any client`)
	}
	nodes := []string{"nats-1", "nats-2", "nats-3"}
	for _, n := range nodes {
		s := p.Services[n]
		if want := "nats:" + natsServerMinor(t) + "-alpine"; s.Image != want {
			t.Errorf("%s image %s, want %s (the nats-server of cmd/sdevents/go.mod)", n, s.Image, want)
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s has no health check", n)
		}
		if name := s.Environment["NATS_SERVER_NAME"]; name == nil || *name != n {
			t.Errorf("%s: NATS_SERVER_NAME %v, want its service name", n, name)
		}
		if !strings.Contains(conf, "nats://"+n+":6222") {
			t.Errorf("nats.conf does not route to %s", n)
		}
		if len(s.Volumes) == 0 || s.Volumes[0].Target != "/data" || s.Volumes[0].Type != types.VolumeTypeVolume {
			t.Errorf("%s volumes %v: want a named volume at /data (jetstream.store_dir)", n, s.Volumes)
		}
		mounted := map[string]string{}
		for _, c := range s.Configs {
			mounted[c.Source] = c.Target
		}
		if mounted["nats"] != "/etc/nats/nats.conf" || mounted["nats-users"] != "/etc/nats/nats-users.conf" {
			t.Errorf("%s mounts %v: want nats.conf and nats-users.conf side by side in /etc/nats", n, mounted)
		}
	}
	m := regexp.MustCompile(`(?m)^max_payload:\s*(\d+)`).FindStringSubmatch(conf)
	if m == nil {
		t.Fatal("nats.conf sets no numeric max_payload")
	}
	payload, _ := strconv.Atoi(m[1])
	if ingress := ingressMaxMsgSize(t); payload < ingress {
		t.Errorf("max_payload %d is below INGRESS's max_msg_size %d", payload, ingress)
	}
}

// ingressMaxMsgSize is the largest message INGRESS accepts.
func ingressMaxMsgSize(t *testing.T) int {
	t.Helper()
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Stream != nil && f.Stream.Name == contract.StreamIngress {
			return int(f.Stream.MaxMsgSize)
		}
	}
	t.Fatal("no INGRESS stream")
	return 0
}

func readAbs(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
