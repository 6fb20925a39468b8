package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/streams"
)

// externalConfig is the example configuration of a single service against
// the NATS at url, with the SDEVENTS_* overrides in env.
func externalConfig(t *testing.T, url string, env map[string]string) config.Config {
	t.Helper()
	all := map[string]string{
		"SDEVENTS_HTTP_ADDR":   "127.0.0.1:0",
		"SDEVENTS_NATS_URL":    url,
		"SDEVENTS_ARCHIVE_DIR": filepath.Join(t.TempDir(), "archive"),
		"SDEVENTS_LOG_LEVEL":   "error",
	}
	for k, v := range env {
		all[k] = v
	}
	cfg, err := config.Load(filepath.Join("..", "..", "sdevents.example.yaml"), all)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// buildIngress builds (without running) a process of the ingress alone
// with cfg; it is cleaned up when the test ends.
func buildIngress(t *testing.T, cfg config.Config) (*process, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, cleanup, err := build(ctx, cfg, []string{"ingress"})
	if err == nil {
		t.Cleanup(cleanup)
	}
	return p, err
}

// answer answers one GET of path by p's HTTP handler.
func answer(p *process, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.http.Echo().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// editJobsAndArchiver changes JOBS's max_age to 48h and the INGRESS
// archiver consumer's max_ack_pending to 64, as an operator would with
// `nats stream edit JOBS --max-age 48h` and `nats consumer edit`.
func editJobsAndArchiver(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, contract.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxAge = 48 * time.Hour
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, contract.StreamIngress, "archiver")
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	cc.MaxAckPending = 64
	if _, err := js.UpdateConsumer(ctx, contract.StreamIngress, cc); err != nil {
		t.Fatal(err)
	}
}

func jobsMaxAge(t *testing.T, js jetstream.JetStream) time.Duration {
	t.Helper()
	s, err := js.Stream(context.Background(), contract.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config.MaxAge
}

func archiverMaxAckPending(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	c, err := js.Consumer(context.Background(), contract.StreamIngress, "archiver")
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo().Config.MaxAckPending
}

// TestStreamsApplyUpdateResetsAnOperatorEdit: with streams.apply update (the
// default of `sdevents run`) a start resets an operator's edit to the
// definition, and the configured retention reaches the stream.
func TestStreamsApplyUpdateResetsAnOperatorEdit(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	env := map[string]string{"SDEVENTS_STREAMS_APPLY": "update", "SDEVENTS_STREAMS_JOBS_MAX_AGE": "168h"}
	if _, err := buildIngress(t, externalConfig(t, node.URL(), env)); err != nil {
		t.Fatal(err)
	}
	if got := jobsMaxAge(t, js); got != 168*time.Hour {
		t.Fatalf("JOBS max_age %s, want the configured 168h", got)
	}
	editJobsAndArchiver(t, js)
	p, err := buildIngress(t, externalConfig(t, node.URL(), env))
	if err != nil {
		t.Fatal(err)
	}
	if got, pending := jobsMaxAge(t, js), archiverMaxAckPending(t, js); got != 168*time.Hour || pending != 512 {
		t.Fatalf("after a start with update: JOBS max_age %s, archiver max_ack_pending %d; want 168h, 512", got, pending)
	}
	if rec := answer(p, "/metrics"); !strings.Contains(rec.Body.String(), `sdevents_stream_config_drift{stream="JOBS"} 0`) {
		t.Errorf("/metrics lacks a drift of 0 for JOBS:\n%s", grepLines(rec.Body.String(), "drift"))
	}
}

// TestStreamsApplyCreateKeepsAnOperatorEdit: a single service (default
// create) creates the streams on a fresh server, and a later start leaves
// an operator's edits of a stream and a consumer as they are, showing them
// in sdevents_stream_config_drift; the process is ready.
func TestStreamsApplyCreateKeepsAnOperatorEdit(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	if _, err := buildIngress(t, externalConfig(t, node.URL(), nil)); err != nil {
		t.Fatal(err)
	}
	if got := jobsMaxAge(t, js); got != 720*time.Hour {
		t.Fatalf("JOBS created with max_age %s, want 720h", got)
	}
	editJobsAndArchiver(t, js)
	p, err := buildIngress(t, externalConfig(t, node.URL(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, pending := jobsMaxAge(t, js), archiverMaxAckPending(t, js); got != 48*time.Hour || pending != 64 {
		t.Fatalf("after a start with create: JOBS max_age %s, archiver max_ack_pending %d; want the operator's 48h, 64", got, pending)
	}
	metrics := answer(p, "/metrics").Body.String()
	for _, want := range []string{`sdevents_stream_config_drift{stream="JOBS"} 1`, `sdevents_stream_config_drift{stream="INGRESS"} 1`, `sdevents_stream_config_drift{stream="QUOTA"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(metrics, "drift"))
		}
	}
	// Readiness checks the ingress's index too: only the streams matter here.
	if rec := answer(p, "/readyz"); strings.Contains(rec.Body.String(), `"streams"`) {
		t.Errorf("/readyz reports the streams: %s", rec.Body)
	}
}

// TestStreamsApplyOffNeedsTheStreams: with streams.apply off a process
// creates nothing and refuses to start without its streams, naming them;
// once they exist it starts, and a consumer deleted later makes it not
// ready.
func TestStreamsApplyOffNeedsTheStreams(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	off := map[string]string{"SDEVENTS_STREAMS_APPLY": "off"}
	_, err := buildIngress(t, externalConfig(t, node.URL(), off))
	if err == nil {
		t.Fatal("started without its streams")
	}
	for _, want := range []string{"streams.apply is off", "missing", "stream INGRESS", "consumer INGRESS/archiver", "kv ARCHIVE_KEYS", "deploy/base/nack"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if names := streamNames(t, js); len(names) > 0 {
		t.Fatalf("off created %v", names)
	}

	natstest.ApplyStreams(t, js, 1)
	p, err := buildIngress(t, externalConfig(t, node.URL(), off))
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(context.Background(), contract.StreamIngress, "archiver"); err != nil {
		t.Fatal(err)
	}
	rec := answer(p, "/readyz")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "consumer INGRESS/archiver") {
		t.Fatalf("/readyz without the archiver consumer: %d %s", rec.Code, rec.Body)
	}
}

func streamNames(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	l := js.StreamNames(context.Background())
	var out []string
	for n := range l.Name() {
		out = append(out, n)
	}
	if l.Err() != nil {
		t.Fatal(l.Err())
	}
	return out
}

// TestStreamOwnerLogs: a reset is logged once per stream under update;
// under create a drift is logged when it appears and when it goes, not on
// every check, and the gauge follows it.
func TestStreamOwnerLogs(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	files, err := streams.Definitions(streamLimits(config.Default().Streams))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var logs bytes.Buffer
	editJobsAndArchiver(t, js)
	o := newStreamOwner(js, files, 1, streams.ModeUpdate, zerolog.New(&logs))
	r, err := streams.Apply(ctx, js, files, streams.ModeUpdate, 1)
	if err != nil {
		t.Fatal(err)
	}
	o.observe(r)
	for _, want := range []string{
		`{"level":"warn","streams_apply":"update","stream":"JOBS","changes":["stream JOBS max_age: 48h0m0s, defined 720h0m0s"],"message":"stream settings differed from the definition and were reset (streams.apply: update)"}`,
		`"stream":"INGRESS","changes":["consumer INGRESS/archiver max_ack_pending: 64, defined 512"]`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}

	logs.Reset()
	editJobsAndArchiver(t, js)
	o = newStreamOwner(js, files, 1, streams.ModeCreate, zerolog.New(&logs))
	for range 2 { // the second check finds the same drift and logs nothing
		if err := o.check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 2 || !strings.Contains(logs.String(),
		`{"level":"warn","streams_apply":"create","stream":"JOBS","drift":["stream JOBS max_age: 48h0m0s, defined 720h0m0s"],"message":"stream settings differ from the definition; left as they are"}`) {
		t.Errorf("want one drift line for JOBS and one for INGRESS, got:\n%s", logs.String())
	}
	if v := testutil.ToFloat64(o.drift.WithLabelValues(contract.StreamJobs)); v != 1 {
		t.Errorf("drift gauge of JOBS = %v, want 1", v)
	}

	logs.Reset()
	if _, err := streams.Apply(ctx, js, files, streams.ModeUpdate, 1); err != nil {
		t.Fatal(err)
	}
	if err := o.check(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"stream":"JOBS","message":"stream settings agree with the definition again"`) {
		t.Errorf("log lacks the end of the drift:\n%s", logs.String())
	}
	if v := testutil.ToFloat64(o.drift.WithLabelValues(contract.StreamJobs)); v != 0 {
		t.Errorf("drift gauge of JOBS = %v after the reset, want 0", v)
	}
}
