package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natsauth"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// exampleConfig loads the repository's example configuration with free ports
// and a temporary store, as an operator would through the environment.
func exampleConfig(t *testing.T, storeDir string) config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "..", "sdevents.example.yaml"), map[string]string{
		"SDEVENTS_HTTP_ADDR":               "127.0.0.1:0",
		"SDEVENTS_NATS_EMBEDDED_ADDR":      "127.0.0.1:0",
		"SDEVENTS_NATS_EMBEDDED_STORE_DIR": storeDir,
		"SDEVENTS_ARCHIVE_DIR":             filepath.Join(storeDir, "archive"),
		"SDEVENTS_LOG_LEVEL":               "warn",
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// running is a process of `sdevents run` started in the test. Unless
// forging is set, stopping it fails the test when the embedded server
// refused anything a service did: every test of `sdevents run` also proves
// that the services' NATS users may do what the test made them do.
type running struct {
	p       *process
	stop    func()
	forging bool
}

func startRun(t *testing.T, cfg config.Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, cleanup, err := build(ctx, cfg, runAll())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()
	r := &running{p: p}
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		if n := violations(t, p); n > 0 && !r.forging {
			t.Errorf("the embedded server refused %v publications or subscriptions of the services (see the nats-server errors in the log)", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		cleanup()
	}
	t.Cleanup(r.stop)
	natstest.Eventually(t, 10*time.Second, "/readyz", func() bool {
		resp, err := http.Get("http://" + p.http.Addr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

// violations is what the process's embedded server counted as permission
// violations.
func violations(t *testing.T, p *process) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "sdevents_nats_permission_violations_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no sdevents_nats_permission_violations_total")
	return 0
}

// connect connects to the process's embedded server as user, with the
// password the process made for it; the connection is closed at cleanup.
func (r *running) connect(t *testing.T, user string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	pw, err := natsauth.ReadPassword(credentialsDir(r.p.cfg.NATS.Embedded.StoreDir), user)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]nats.Option{nats.UserInfo(user, pw), nats.CustomInboxPrefix(natsauth.InboxPrefix(user))}, opts...)
	return natstest.Connect(t, r.p.srv.ClientURL(), opts...)
}

// natsEnv is the environment of a command run against the process's
// embedded server as user (an external NATS to that command).
func (r *running) natsEnv(user string) []string {
	return []string{"SDEVENTS_NATS_URL=" + r.p.srv.ClientURL(), "SDEVENTS_NATS_USER=" + user,
		"SDEVENTS_NATS_PASSWORD_FILE=" + filepath.Join(credentialsDir(r.p.cfg.NATS.Embedded.StoreDir), user)}
}

func (r *running) sendTaskFinished(t *testing.T, cfg config.Config, nonce string) int {
	t.Helper()
	code, err := sendTaskFinished(cfg, r.p.http.Addr(), "i-restart", nonce)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// sendTaskFinished POSTs a signed sdTaskFinished callback of invokeID to the
// ingress at addr, signed with the first key of cfg's first source, and
// returns the status, or the error when no answer came.
func sendTaskFinished(cfg config.Config, addr, invokeID, nonce string) (int, error) {
	key := callback.Key{AK: cfg.Callbacks[0].Keys[0].AK, SK: cfg.Callbacks[0].Keys[0].SK.Reveal()}
	body := []byte(`{"success":true,"data":{"generatedImageId":"g-1","url":"http://127.0.0.1:9/a.png"}}`)
	enc, err := callback.EncryptToken("user-restart", key.SK, nil)
	if err != nil {
		return 0, err
	}
	p := callback.Params{APIID: "api", BizType: callback.BizTaskFinished, InvokeID: invokeID, APIToken: enc,
		Nonce: nonce, Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	p.Sign = callback.Sign(key, p, body, "user-restart")
	q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
		"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post("http://"+addr+"/v1/callbacks/"+cfg.Callbacks[0].Name+"?"+q.Encode(), "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (r *running) ingressMsgs(t *testing.T) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := r.p.js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestExampleConfigStartsAndRestartKeepsEvents starts `sdevents run` from the
// example configuration, stores a callback, restarts on the same store and
// finds the event again; a retry after the restart is still stored once.
func TestExampleConfigStartsAndRestartKeepsEvents(t *testing.T) {
	store := t.TempDir()
	cfg := exampleConfig(t, store)
	first := startRun(t, cfg)
	if code := first.sendTaskFinished(t, cfg, "n1"); code != http.StatusOK {
		t.Fatalf("first delivery: %d", code)
	}
	if n := first.ingressMsgs(t); n != 1 {
		t.Fatalf("INGRESS has %d messages, want 1", n)
	}
	first.stop()

	second := startRun(t, cfg)
	if n := second.ingressMsgs(t); n != 1 {
		t.Fatalf("after restart INGRESS has %d messages, want 1", n)
	}
	if code := second.sendTaskFinished(t, cfg, "n2"); code != http.StatusOK {
		t.Fatalf("retry after restart: %d", code)
	}
	if n := second.ingressMsgs(t); n != 1 {
		t.Fatalf("a retry after restart was stored again: %d messages", n)
	}
}
