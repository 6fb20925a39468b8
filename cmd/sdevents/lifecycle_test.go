package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/proctest"
)

// TestNATSClosedForGoodStopsTheProcess: when nats.go gives the connection
// up for good — here because a publish's control line exceeded the
// server's limit, as a 4 KB bizType once made it — nothing can be stored
// any more: /healthz turns red and the process stops with the error (the
// binary then exits non-zero for its supervisor to restart it).
func TestNATSClosedForGoodStopsTheProcess(t *testing.T) {
	p, done := startProcess(t, exampleConfig(t, t.TempDir()))
	closeForGood(t, p, done)
	rec := httptest.NewRecorder()
	p.http.Echo().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "closed for good") {
		t.Fatalf("/healthz after the connection closed: %d %s", rec.Code, rec.Body)
	}
}

// TestLiveStreamDoesNotHoldAStopForGood: a process that stops for good on
// its own (its NATS connection closed, no signal) ends the console's open
// live streams as its HTTP server starts shutting down, so that the
// shutdown does not wait for the viewer until shutdown_timeout (an hour
// here).
func TestLiveStreamDoesNotHoldAStopForGood(t *testing.T) {
	cfg := exampleConfig(t, t.TempDir())
	cfg.Shutdown = config.Duration(time.Hour)
	p, done := startProcess(t, cfg)
	req, err := http.NewRequest(http.MethodGet, "http://"+p.http.Addr()+"/console/live/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cfg.Admin.Token.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("live stream: %d", resp.StatusCode)
	}
	ended := make(chan struct{})
	go func() { defer close(ended); _, _ = io.Copy(io.Discard, resp.Body) }()
	closeForGood(t, p, done)
	<-ended
}

// startProcess builds a process of every target from cfg and runs it until
// the test ends; done receives what run returns.
func startProcess(t *testing.T, cfg config.Config) (p *process, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p, cleanup, err := build(ctx, cfg, runAll())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	ran := make(chan error, 1)
	go func() { ran <- p.run(ctx) }()
	waitHTTPReady(t, p.http.Addr())
	return p, ran
}

// closeForGood makes nats.go give the process's main connection up for good
// — a publish whose control line exceeds the server's limit, as a 4 KB
// bizType once made it — and waits, a minute at most, for run to return
// errNATSClosed.
func closeForGood(t *testing.T, p *process, done <-chan error) {
	t.Helper()
	if err := p.nc.Publish("sd.callback.default."+strings.Repeat("x", 5000), nil); err != nil {
		t.Fatal(err)
	}
	_ = p.nc.Flush()
	select {
	case err := <-done:
		if !errors.Is(err, errNATSClosed) {
			t.Fatalf("run returned %v, want %v", err, errNATSClosed)
		}
	case <-time.After(time.Minute):
		t.Fatal("the process did not stop on a connection closed for good")
	}
}

// TestBinaryExitsNonZeroWhenNATSGivesUp: the built binary (`sdevents
// ingress` against an external NATS) exits with a non-zero status once its
// NATS connection is closed for good — the server's max_control_line is
// lowered under it, and the next store's publish exceeds it.
func TestBinaryExitsNonZeroWhenNATSGivesUp(t *testing.T) {
	node := natstest.Start(t)
	bin := proctest.Build(t, ".", "sdevents")
	dir := t.TempDir()
	httpAddr := proctest.FreeAddr(t)
	cfgPath := filepath.Join(dir, "sdevents.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`http:
  addr: %s
nats:
  url: %s
callbacks:
  - name: default
    keys: [{ak: AK-exit, sk: SK-exit}]
log:
  level: warn
shutdown_timeout: 5s
`, httpAddr, node.URL()))
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "ingress.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "ingress", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	waitHTTPReady(t, httpAddr)
	if code, err := sendTaskFinished(cfg, httpAddr, "i-before", "n-before"); err != nil || code != http.StatusOK {
		t.Fatalf("before: %d %v", code, err)
	}

	node.Reload(func(o *server.Options) { o.MaxControlLine = 32 })
	if code, err := sendTaskFinished(cfg, httpAddr, "i-after", "n-after"); err == nil && code == http.StatusOK {
		t.Fatalf("stored over a publish the server refused")
	}
	select {
	case <-exited:
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("exit: %v, want a non-zero status", waitErr)
		}
	case <-time.After(time.Minute):
		t.Fatal("the process kept running on a closed NATS connection")
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), "nats connection closed for good") {
		t.Errorf("the log does not say why:\n%s", log)
	}
	if resp, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("/healthz answers %d after the exit", resp.StatusCode)
	}
}

// get returns the status and body of GET path on addr (0 when no answer
// came).
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHTTPReady polls /readyz on addr until it answers 200.
func waitHTTPReady(t *testing.T, addr string) {
	t.Helper()
	natstest.Eventually(t, 2*time.Minute, "/readyz", func() bool {
		code, _ := get(t, addr, "/readyz")
		return code == http.StatusOK
	})
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
