package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/ingress"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Reset forgets what was written.
func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is an ingress on real HTTP over an embedded JetStream node.
type harness struct {
	t    testing.TB
	node *natstest.Node
	nc   *nats.Conn
	js   jetstream.JetStream
	base string
	// handler serves requests in-process, without the network.
	handler http.Handler
	logs    *syncBuffer
	now     time.Time
	mu      sync.Mutex
}

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) setNow(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = t
}

var testKey = callback.Key{AK: "AK-test", SK: "SK-test"}

func baseConfig(keys ...callback.Key) ingress.Config {
	if len(keys) == 0 {
		keys = []callback.Key{testKey}
	}
	return ingress.Config{
		Callbacks: []ingress.CallbackSource{{Name: "default", Keys: keys}, {Name: "other", Keys: []callback.Key{{AK: "AK-o", SK: "SK-o"}}}},
		// Deadlines a loaded machine meets: a 1 MiB publish, a claim and a
		// store in a synchronous callback's time.
		SyncDeadline:   2 * time.Second,
		PublishTimeout: 2 * time.Second,
	}
}

// roomyConfig is baseConfig with a publish deadline no loaded machine
// reaches, for tests in which a timeout is no outcome under test.
func roomyConfig() ingress.Config {
	cfg := baseConfig()
	cfg.PublishTimeout = 10 * time.Second
	cfg.SyncDeadline = 10 * time.Second
	return cfg
}

func startHarness(t testing.TB, cfg ingress.Config, opts ...ingress.Option) *harness {
	t.Helper()
	node := natstest.Start(t)
	nc, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	h := &harness{t: t, node: node, nc: nc, js: js, logs: &syncBuffer{}, now: time.Now()}
	r := serveIngress(t, cfg, js, h.logs, append([]ingress.Option{ingress.WithClock(h.clock)}, opts...)...)
	h.base, h.handler = r.base, r.handler
	return h
}

// replica is one ingress serving real HTTP on loopback.
type replica struct {
	base string
	// handler serves requests in-process, without the network.
	handler http.Handler
}

// serveIngress runs an ingress over js on a loopback port until the test
// ends, logging to logs, and waits until it is ready.
func serveIngress(t testing.TB, cfg ingress.Config, js jetstream.JetStream, logs io.Writer, opts ...ingress.Option) replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv := httpserver.New(zerolog.New(logs), reg)
	in, err := ingress.New(context.Background(), cfg, js, reg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	in.Routes(srv.Echo())
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { defer func() { done <- struct{}{} }(); _ = srv.Run(ctx) }()
	go func() { defer func() { done <- struct{}{} }(); _ = in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		_ = srv.Shutdown(context.Background())
		<-done
		<-done
	})
	natstest.Eventually(t, 20*time.Second, "ingress ready", func() bool { return in.Ready(ctx) == nil })
	return replica{base: "http://" + srv.Addr(), handler: srv.Echo()}
}

// call is one signed callback.
type call struct {
	source   string
	key      callback.Key
	bizType  string
	invokeID string
	token    string
	body     []byte
	nonce    string
	ts       time.Time
}

// query signs c the way the platform does.
func (c call) query(t testing.TB) url.Values {
	t.Helper()
	enc := ""
	if c.token != "" {
		var err error
		if enc, err = callback.EncryptToken(c.token, c.key.SK, nil); err != nil {
			t.Fatal(err)
		}
	}
	p := callback.Params{APIID: "api-1", BizType: c.bizType, InvokeID: c.invokeID, APIToken: enc,
		Nonce: c.nonce, Timestamp: strconv.FormatInt(c.ts.UnixMilli(), 10)}
	if p.Nonce == "" {
		p.Nonce = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	p.Sign = callback.Sign(c.key, p, c.body, c.token)
	return url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
		"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
}

func (h *harness) post(path string, q url.Values, body []byte) (int, map[string]any) {
	h.t.Helper()
	resp, err := http.Post(h.base+path+"?"+q.Encode(), "application/json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		h.t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	if resp.StatusCode >= 400 && m["success"] != false {
		h.t.Fatalf("error answer without success:false: %s", raw)
	}
	return resp.StatusCode, m
}

func (h *harness) send(c call) (int, map[string]any) {
	h.t.Helper()
	if c.source == "" {
		c.source = "default"
	}
	if c.key == (callback.Key{}) {
		c.key = testKey
	}
	if c.ts.IsZero() {
		c.ts = h.clock()
	}
	return h.post("/v1/callbacks/"+c.source, c.query(h.t), c.body)
}

func (h *harness) count(subject string) uint64 {
	h.t.Helper()
	return countMessages(h.t, h.js, subject)
}

// countMessages counts the INGRESS messages on subject ("" or ">" = all).
func countMessages(t testing.TB, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	if subject == "" || subject == ">" {
		return info.State.Msgs
	}
	return n
}

func (h *harness) last(subject string) *jetstream.RawStreamMsg {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		h.t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		h.t.Fatalf("last %s: %v", subject, err)
	}
	return m
}

// allMessages returns every INGRESS message, headers and data, as text.
func (h *harness) allMessages() string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var b bytes.Buffer
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s %v %s\n", m.Subject, m.Header, m.Data)
	}
	return b.String()
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
