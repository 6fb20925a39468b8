package deploy

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/sdevents/sdevents/pkg/config"
)

// The files `make test-stack` (scripts/test-stack.sh) runs compose.yaml with.
const (
	simOverride     = "deploy/compose/sim.yaml"
	offlineOverride = "deploy/compose/offline.yaml"
	offlineImages   = "deploy/compose/offline.Dockerfile"
	simConfig       = "deploy/compose/sim-sdevents.yaml"
)

// loadComposeFiles loads compose.yaml with overrides (paths relative to the
// repository root), as `docker compose -f ... -f ...` does, with an empty
// environment.
func loadComposeFiles(t *testing.T, files ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(root, f))
	}
	opts, err := cli.NewProjectOptions(paths, cli.WithWorkingDirectory(root), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serviceEnv is a service's environment without unset variables.
func serviceEnv(s types.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// serviceConfig loads the sdevents configuration a service of p runs with:
// its mounted configs and secrets, its environment.
func serviceConfig(t *testing.T, p *types.Project, s types.ServiceConfig) (config.Config, error) {
	t.Helper()
	env := serviceEnv(s)
	files := map[string][]byte{}
	for _, c := range s.Configs {
		f := p.Configs[c.Source].File
		if _, err := os.Stat(f); err != nil && c.Target != env["SDEVENTS_CONFIG"] {
			// The simulator's CA, created before the stack starts: a file
			// pkg/config names but does not read.
			continue
		}
		files[c.Target] = readAbs(t, f)
	}
	for _, sec := range s.Secrets {
		target := sec.Target
		if target == "" {
			target = "/run/secrets/" + sec.Source
		}
		files[target] = readAbs(t, p.Secrets[sec.Source].File)
	}
	return loadConfigAs(t, files, env, env["SDEVENTS_CONFIG"])
}

// loadFromRoot loads a configuration whose file paths are relative to the
// repository root, as the commands that use it run there: the paths are
// made absolute in a copy.
func loadFromRoot(t *testing.T, rel string) (config.Config, error) {
	t.Helper()
	root := repoRoot(t)
	abs := regexp.MustCompile(`(?m)^(\s*\w+_file:\s*)([^\s"#/][^\s#]*)`).ReplaceAllString(string(readFile(t, rel)), "${1}"+root+"/${2}")
	f := filepath.Join(t.TempDir(), filepath.Base(rel))
	if err := os.WriteFile(f, []byte(abs), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(f, nil)
}

// TestOfflineStackDiffersOnlyInImages checks deploy/compose/offline.yaml: on
// top of compose.yaml and the simulator override it changes the images, the
// health checks that need a shell, and minio-init (left out, with the
// archiver's wait for it) — nothing else, so that what the offline run
// proves holds for compose.yaml. Every image is built from the offline
// Dockerfile by exactly one service and never pulled.
func TestOfflineStackDiffersOnlyInImages(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	online := loadComposeFiles(t, "compose.yaml", simOverride)
	offline := loadComposeFiles(t, "compose.yaml", simOverride, offlineOverride)
	df, err := parseDockerfile(readFile(t, offlineImages))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]stage{}
	for _, s := range df.stages {
		targets[s.name] = s
	}

	if _, ok := offline.DisabledServices["minio-init"]; !ok {
		t.Error("minio-init (minio/mc) is not left out of the offline stack")
	}
	if !slices.Equal(slices.Sorted(maps.Keys(offline.Services)), slices.Sorted(maps.Keys(online.Services))) {
		// minio-init aside, both run the same services.
		want := slices.DeleteFunc(slices.Sorted(maps.Keys(online.Services)), func(s string) bool { return s == "minio-init" })
		if got := slices.Sorted(maps.Keys(offline.Services)); !slices.Equal(got, want) {
			t.Errorf("offline services %v, want %v", got, want)
		}
	}

	builders := map[string]string{} // image → the service that builds it
	for name, s := range offline.Services {
		if s.Build == nil {
			continue
		}
		if s.PullPolicy != types.PullPolicyBuild {
			t.Errorf("%s builds %s with pull_policy %q: want build (never pulled)", name, s.Image, s.PullPolicy)
		}
		if other, ok := builders[s.Image]; ok {
			t.Errorf("%s and %s both build %s", name, other, s.Image)
		}
		builders[s.Image] = name
		if f := filepath.Join(s.Build.Context, s.Build.Dockerfile); f != filepath.Join(root, offlineImages) {
			t.Errorf("%s is built from %s, want %s", name, f, offlineImages)
		}
		if want := filepath.Join(root, "data/stack/images", s.Build.Target); s.Build.Context != want {
			t.Errorf("%s builds in %s, want %s (what scripts/test-stack.sh stages)", name, s.Build.Context, want)
		}
		tg, ok := targets[s.Build.Target]
		if !ok {
			t.Errorf("%s builds target %q, which %s does not have", name, s.Build.Target, offlineImages)
			continue
		}
		if tg.image != "scratch" {
			t.Errorf("target %s is FROM %s, want scratch (no registry)", tg.name, tg.image)
		}
	}
	for name, s := range offline.Services {
		if _, ok := builders[s.Image]; !ok {
			t.Errorf("%s runs %s, which no service builds", name, s.Image)
		}
		if s.Build == nil && s.PullPolicy != types.PullPolicyNever {
			t.Errorf("%s uses %s with pull_policy %q: want never (built by %s)", name, s.Image, s.PullPolicy, builders[s.Image])
		}
		hc := s.HealthCheck
		if oneShot := s.Restart == "no" && hc != nil && hc.Disable; oneShot {
			// The one-shot "streams" exits once it has applied the definitions.
		} else if hc == nil || len(hc.Test) != 3 || hc.Test[0] != "CMD" || hc.Test[1] != "/healthcheck" || !strings.HasPrefix(hc.Test[2], "http://127.0.0.1:") {
			t.Errorf("%s health check %v: want [CMD /healthcheck http://127.0.0.1:...] (no shell in the image)", name, hc)
		}
		if tg, ok := targets[offline.Services[builders[s.Image]].Build.Target]; ok && !slices.ContainsFunc(tg.body, func(in instruction) bool {
			return in.cmd == "copy" && slices.Contains(in.args, "healthcheck")
		}) {
			t.Errorf("the image of %s has no /healthcheck", name)
		}

		// Everything else is compose.yaml's.
		want, got := online.Services[name], s
		if name == "archiver" {
			dep := maps.Clone(want.DependsOn)
			delete(dep, "minio-init")
			dep["minio"] = types.ServiceDependency{Condition: types.ServiceConditionHealthy, Required: true}
			want.DependsOn = dep
		}
		for _, c := range []*types.ServiceConfig{&want, &got} {
			c.Image, c.Build, c.PullPolicy = "", nil, ""
			if c.HealthCheck != nil {
				h := *c.HealthCheck
				h.Test = nil
				c.HealthCheck = &h
			}
		}
		for _, d := range fieldDiffs("", reflect.ValueOf(want), reflect.ValueOf(got)) {
			t.Errorf("%s: %s (only the image and the health check may differ)", name, d)
		}
	}
}

// fieldDiffs names the exported fields of two structs of one type that
// differ, descending into struct fields, with both values.
func fieldDiffs(prefix string, a, b reflect.Value) []string {
	var out []string
	for i := range a.NumField() {
		f := a.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		fa, fb := a.Field(i), b.Field(i)
		switch {
		case fa.Kind() == reflect.Struct:
			out = append(out, fieldDiffs(prefix+f.Name+".", fa, fb)...)
		case !reflect.DeepEqual(fa.Interface(), fb.Interface()):
			out = append(out, fmt.Sprintf("%s%s is %+v in compose.yaml, %+v offline", prefix, f.Name, fa.Interface(), fb.Interface()))
		}
	}
	return out
}

// TestOfflineImages checks the offline Dockerfile's targets: each copies its
// program and /healthcheck FROM scratch, and the sdevents target runs as the
// Dockerfile's final stage does.
func TestOfflineImages(t *testing.T) {
	t.Parallel()
	df, err := parseDockerfile(readFile(t, offlineImages))
	if err != nil {
		t.Fatal(err)
	}
	main, err := parseDockerfile(readFile(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	final := main.stages[len(main.stages)-1]
	// summary: the instructions that decide how a container runs, and the
	// paths the stage puts files at.
	summary := func(s stage) (run map[string]string, paths []string) {
		run = map[string]string{}
		for _, in := range s.body {
			switch in.cmd {
			case "user", "entrypoint", "expose":
				run[in.cmd] = strings.Join(in.args, " ")
			case "copy":
				for _, dst := range copies(in, "/") {
					paths = append(paths, "/"+dst)
				}
			}
		}
		slices.Sort(paths)
		return run, paths
	}
	for _, want := range []struct{ target, program string }{{"sdevents", "sdevents"}, {"nats", "nats-server"}, {"minio", "minio"}} {
		i := slices.IndexFunc(df.stages, func(s stage) bool { return s.name == want.target })
		if i < 0 {
			t.Errorf("no target %s", want.target)
			continue
		}
		s := df.stages[i]
		run, paths := summary(s)
		if s.image != "scratch" {
			t.Errorf("target %s is FROM %s, want scratch", s.name, s.image)
		}
		if w := []string{"/healthcheck", "/" + want.program}; !slices.Equal(paths, w) {
			t.Errorf("target %s puts %v, want %v", s.name, paths, w)
		}
		if run["entrypoint"] != "/"+want.program {
			t.Errorf("target %s ENTRYPOINT %q, want /%s", s.name, run["entrypoint"], want.program)
		}
		if want.target == "sdevents" {
			wantRun, wantPaths := summary(final)
			if !maps.Equal(run, wantRun) || !slices.Equal(paths, wantPaths) {
				t.Errorf("target sdevents runs %v with %v; the Dockerfile's final stage %v with %v", run, paths, wantRun, wantPaths)
			}
		}
	}
}

// TestSimulatorOverride checks what deploy/compose/sim.yaml opens for the
// simulator and that the simulator's configuration, deploy/compose/sim-sdevents.yaml,
// matches the stack: compose.yaml alone lets the archiver fetch no private
// address; with the override, exactly the simulator's image server on the
// stack network's gateway; the simulator signs with the stack's key pair,
// grants with its admin token, verifies through nats-1's published port,
// serves SNS where the ingress trusts it, and uploads where the archiver reads.
func TestSimulatorOverride(t *testing.T) {
	t.Parallel()
	plain := loadComposeFiles(t, "compose.yaml")
	for _, name := range sdeventsServices {
		cfg, err := serviceConfig(t, plain, plain.Services[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(cfg.Archive.AllowHosts) != 0 {
			t.Errorf("compose.yaml: %s has archive.allow_hosts %v: the SSRF guard must stay closed there", name, cfg.Archive.AllowHosts)
		}
	}

	p := loadComposeFiles(t, "compose.yaml", simOverride)
	cfgs := map[string]config.Config{}
	for _, name := range sdeventsServices {
		cfg, err := serviceConfig(t, p, p.Services[name])
		if err != nil {
			t.Fatalf("%s with %s: %v", name, simOverride, err)
		}
		cfgs[name] = cfg
	}
	ipam := p.Networks["default"].Ipam.Config
	if len(ipam) != 1 {
		t.Fatalf("the default network's IPAM %v: want one subnet", ipam)
	}
	_, subnet, err := net.ParseCIDR(ipam[0].Subnet)
	if err != nil {
		t.Fatal(err)
	}
	gateway := subnet.IP.To4()
	gateway[3]++
	images, snsHost := net.JoinHostPort(gateway.String(), "9700"), net.JoinHostPort(gateway.String(), "9443")
	if got := cfgs["archiver"].Archive.AllowHosts; !slices.Equal(got, []string{images}) {
		t.Errorf("archiver allow_hosts %v: want only the simulator's image server %s", got, images)
	}
	for _, name := range []string{"ingress", "quota", "aggregator"} {
		if got := cfgs[name].Archive.AllowHosts; len(got) != 0 {
			t.Errorf("%s allow_hosts %v: only the archiver fetches", name, got)
		}
	}
	in := cfgs["ingress"].SNS[0]
	if !slices.Equal(in.CertHosts, []string{snsHost}) || in.CAFile == "" {
		t.Errorf("ingress sns[0] cert_hosts %v, ca_file %q: want the local SNS at %s and its CA", in.CertHosts, in.CAFile, snsHost)
	}
	if ttl := cfgs["quota"].Quota.ReservationTTL.D(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("quota reservation_ttl %s: want at most a minute, so that lost answers expire while the simulator waits", ttl)
	}

	sim, err := loadFromRoot(t, simConfig)
	if err != nil {
		t.Fatalf("%s: %v (paths are relative to the repository root)", simConfig, err)
	}
	stackKey, simKey := cfgs["ingress"].Callbacks[0].Keys[0], sim.Callbacks[0].Keys[0]
	if simKey.AK != stackKey.AK || simKey.SK.Reveal() != stackKey.SK.Reveal() {
		t.Error("the simulator's key pair is not the stack's")
	}
	if sim.Admin.Token.Reveal() != cfgs["quota"].Admin.Token.Reveal() {
		t.Error("the simulator's admin token is not quota's")
	}
	if sim.Quota.Price.PerImage != cfgs["quota"].Quota.Price.PerImage {
		t.Error("the simulator's price is not quota's")
	}
	if !slices.Equal(sim.SNS[0].CertHosts, []string{snsHost}) || !slices.Equal(sim.Archive.AllowHosts, []string{images}) {
		t.Errorf("simulator cert_hosts %v, allow_hosts %v: want %s and %s", sim.SNS[0].CertHosts, sim.Archive.AllowHosts, snsHost, images)
	}
	if want := p.Configs["sim-ca"].File; sim.SNS[0].CAFile != want {
		t.Errorf("simulator ca_file %s, the ingress mounts %s", sim.SNS[0].CAFile, want)
	}
	src, arc := sim.Archive.SourceS3, cfgs["archiver"].Archive.SourceS3
	if src.AccessKey != arc.AccessKey || src.SecretKey.Reveal() != arc.SecretKey.Reveal() || arc.Endpoint != "minio:9000" {
		t.Errorf("simulator source_s3 %s@%s, archiver's %s@%s: want the same MinIO credentials", src.AccessKey, src.Endpoint, arc.AccessKey, arc.Endpoint)
	}
	published := func(service string, target uint32) string {
		for _, port := range p.Services[service].Ports {
			if port.Target == target {
				return net.JoinHostPort(port.HostIP, port.Published)
			}
		}
		return ""
	}
	if want := published("ingress", 8080); sim.HTTP.Addr != want {
		t.Errorf("simulator http.addr %s, the ingress is published on %s", sim.HTTP.Addr, want)
	}
	if want := "nats://" + published("nats-1", 4222); sim.NATS.URL != want {
		t.Errorf("simulator nats.url %s, nats-1 is published on %s", sim.NATS.URL, want)
	}
	if want := published("minio", 9000); src.Endpoint != want {
		t.Errorf("simulator source_s3 endpoint %s, MinIO is published on %s", src.Endpoint, want)
	}
}
