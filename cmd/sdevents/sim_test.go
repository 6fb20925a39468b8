package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/miniotest"
	"github.com/sdevents/sdevents/pkg/proctest"
	"github.com/sdevents/sdevents/services/simulator"
)

// waitReady polls p's /readyz on httpAddr until it answers 200. When the
// process exits first or the time runs out, it fails with the tail of the
// process's log.
func waitReady(t *testing.T, p *proctest.Proc, httpAddr string, within time.Duration) time.Duration {
	t.Helper()
	exited := p.Exited()
	start := time.Now()
	client := &http.Client{Timeout: time.Second}
	for time.Since(start) < within {
		if resp, err := client.Get("http://" + httpAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		select {
		case <-exited:
			t.Fatalf("sdevents exited before it was ready\n--- log (tail) ---\n%s", p.Tail(60))
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s not ready within %s\n--- log (tail) ---\n%s", httpAddr, within, p.Tail(60))
	return 0
}

// TestSoakWithKills is the 60-second fault soak (docs/simulator.md): the
// built binary runs `sdevents run` on free loopback ports with a temporary
// store; the callback simulator (users, quota, images served by the
// simulator) and the SNS simulator (local SNS with its own CA, images in a
// real MinIO) drive it at a sustained rate while the process is killed with
// SIGKILL and restarted 20 s apart. Afterwards both simulators verify the
// end state from the streams: every accepted request stored exactly once,
// no overdraft, balances = grants − commits, every image archived once with
// its SHA-256, exactly one record per job.
func TestSoakWithKills(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: not in -short")
	}
	// Traffic for 60 s; SIGKILL at 5 s and 25 s. Not later: after a kill,
	// the messages the archiver had in flight come back after the consumer's
	// ack wait (2 min, streams/ingress.yaml), which bounds the settle time.
	const traffic = 60 * time.Second
	killAt := []time.Duration{5 * time.Second, 25 * time.Second}
	bin := proctest.Build(t, ".", "sdevents")
	dir := t.TempDir()
	mc := miniotest.Start(t)
	bucket := mc.MakeBucket(t, "sim-output")
	httpAddr, natsAddr, imgAddr, snsAddr := proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t)
	caFile := filepath.Join(dir, "sim-ca.pem")
	if _, _, err := simulator.LoadOrCreateCA(caFile, caFile+".key"); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "sdevents.yaml")
	cfg := fmt.Sprintf(`http:
  addr: %s
nats:
  embedded:
    addr: %s
    store_dir: %s
callbacks:
  - name: default
    keys:
      - {ak: AK-soak, sk: SK-soak}
      - {ak: AK-soak-rotated, sk: SK-soak-rotated}
sns:
  - name: eks
    topic_arns: ["arn:aws:sns:us-east-1:123456789012:SdOnEKSStack-sdNotificationOutputCfn-abcdefgh"]
    auto_confirm: true
    cert_hosts: [%q]
    ca_file: %s
quota:
  reservation_ttl: 15s
admin:
  token: soak-admin-token
archive:
  dir: %s
  allow_hosts: [%q]
  source_s3: {endpoint: %q, access_key: %q, secret_key: %q, secure: false}
log:
  level: warn
shutdown_timeout: 5s
`, httpAddr, natsAddr, filepath.Join(dir, "nats"), snsAddr, caFile, filepath.Join(dir, "archive"), imgAddr,
		mc.Endpoint, mc.AccessKey, mc.SecretKey)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	runLog := filepath.Join(dir, "run.log")
	server := proctest.Start(t, bin, runLog, "run", "--config", cfgPath)
	first := waitReady(t, server, httpAddr, 2*time.Minute)
	t.Logf("sdevents run ready in %s", first.Round(time.Millisecond))

	common := []string{"--config", cfgPath, "--duration", traffic.String(), "--verify", "--settle", "100s", "--no-progress"}
	cbJSON, snsJSON := filepath.Join(dir, "callbacks.json"), filepath.Join(dir, "sns.json")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	type simResult struct {
		name string
		out  []byte
		err  error
	}
	results := make(chan simResult, 2)
	run := func(name string, args ...string) {
		cmd := exec.CommandContext(ctx, bin, append(append([]string{"sim"}, args...), common...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.CombinedOutput()
		results <- simResult{name, out, err}
	}
	go run("callbacks", "callbacks", "--users", "12", "--rate", "6", "--credits", "40", "--time-scale", "0.05",
		"--drain", "60s", "--image-addr", imgAddr, "--rotate-keys", "--json", cbJSON)
	go run("sns", "sns", "--users", "6", "--rate", "3", "--time-scale", "0.25", "--drain", "60s",
		"--listen", snsAddr, "--ca-file", caFile, "--s3-bucket", bucket, "--duplicates", "0.2", "--json", snsJSON)

	// The faults: SIGKILL and restart while traffic flows.
	start := time.Now()
	var kills []time.Duration
	for _, at := range killAt {
		select {
		case <-time.After(at - time.Since(start)):
		case r := <-results:
			t.Fatalf("sim %s ended early: %v\n%s", r.name, r.err, r.out)
		}
		server.Kill()
		server.Restart()
		kills = append(kills, waitReady(t, server, httpAddr, 2*time.Minute))
	}
	t.Logf("killed and restarted %d times; ready again after %v", len(kills), kills)

	for range 2 {
		r := <-results
		t.Logf("sim %s:\n%s", r.name, r.out)
		if r.err != nil {
			t.Errorf("sim %s: %v\n--- sdevents run log (tail) ---\n%s", r.name, r.err, server.Tail(40))
		}
	}
	// Every service of the process connects as its own NATS user: the
	// embedded server refused nothing they did since the last restart.
	if _, body := get(t, httpAddr, "/metrics"); !strings.Contains(body, "\nsdevents_nats_permission_violations_total 0\n") {
		t.Errorf("the embedded server refused what a service did (sdevents_nats_permission_violations_total):\n%s", server.Tail(40))
	}
	for _, f := range []string{cbJSON, snsJSON} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var rep simReport
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Verification == nil {
			t.Fatalf("%s: no verification", rep.Mode)
		}
		if rep.Work == 0 {
			t.Errorf("%s: no work done", rep.Mode)
		}
		for _, c := range rep.Verification.Checks {
			// sdevents run has every service: a check that could not be
			// made is a failure here, as is one that failed.
			if c.Status != simulator.Pass {
				t.Errorf("%s: %s: %s: %s %s", rep.Mode, c.Name, c.Status, c.Detail, strings.Join(c.Problems, "; "))
			}
		}
	}
}
