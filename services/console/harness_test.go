package console

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/blob"
	"github.com/sdevents/sdevents/pkg/blob/dirstore"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/quotarpc"
)

const adminToken = "console-test-admin-token"

// countingReader counts the requests and messages of the console's reads.
type countingReader struct {
	Reader
	requests atomic.Int64
	msgs     atomic.Int64
}

func (c *countingReader) Bounds(ctx context.Context, stream string) (uint64, uint64, error) {
	c.requests.Add(1)
	return c.Reader.Bounds(ctx, stream)
}

func (c *countingReader) Get(ctx context.Context, stream string, seq uint64) (Msg, error) {
	c.requests.Add(1)
	m, err := c.Reader.Get(ctx, stream, seq)
	if err == nil {
		c.msgs.Add(1)
	}
	return m, err
}

func (c *countingReader) LastBySubject(ctx context.Context, stream, subject string) (Msg, error) {
	c.requests.Add(1)
	m, err := c.Reader.LastBySubject(ctx, stream, subject)
	if err == nil {
		c.msgs.Add(1)
	}
	return m, err
}

func (c *countingReader) Batch(ctx context.Context, stream string, req BatchRequest) ([]Msg, bool, error) {
	c.requests.Add(1)
	msgs, more, err := c.Reader.Batch(ctx, stream, req)
	c.msgs.Add(int64(len(msgs)))
	return msgs, more, err
}

func (c *countingReader) reset() { c.requests.Store(0); c.msgs.Store(0) }

// stubQuota is the quota service as the console sees it (Quota), in memory.
// A quota replica cannot run here — services do not import one another —
// so these tests check what the console does with the quota's answers and
// errors; TestConsoleGrantsThroughQuotaReplicas (cmd/sdevents) grants
// through real replicas over NATS. A grant adds its credits to the state
// that Account answers, unless err is set (then it is the answer) or
// repeat is (then nothing changes).
type stubQuota struct {
	mu     sync.Mutex
	asked  []quotarpc.GrantRequest // every grant asked, in order
	err    error
	repeat bool
	states map[string]quotarpc.AccountState
}

func (q *stubQuota) Grant(_ context.Context, req quotarpc.GrantRequest) (quotarpc.GrantAnswer, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.asked = append(q.asked, req)
	if q.err != nil {
		return quotarpc.GrantAnswer{}, q.err
	}
	st := q.states[req.Account]
	if !q.repeat {
		st.Account, st.Balance, st.Granted = req.Account, st.Balance+req.Credits, st.Granted+req.Credits
		if q.states == nil {
			q.states = map[string]quotarpc.AccountState{}
		}
		q.states[req.Account] = st
	}
	return quotarpc.GrantAnswer{Success: true, Account: req.Account, Credits: req.Credits, ID: req.ID,
		Balance: st.Balance, Reserved: st.Reserved, Repeat: q.repeat}, nil
}

func (q *stubQuota) Account(_ context.Context, id string) (quotarpc.AccountState, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := q.states[id]
	st.Account = id
	return st, nil
}

// answer sets what the next grants are answered: err, or a repeat.
func (q *stubQuota) answer(err error, repeat bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.err, q.repeat = err, repeat
}

// granted returns the grants asked so far.
func (q *stubQuota) granted() []quotarpc.GrantRequest {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.asked)
}

// harness is a console over an embedded JetStream with the project's
// streams, served by the shared HTTP base on loopback.
type harness struct {
	t     *testing.T
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	svc   *Service
	quota *stubQuota
	srv   *httptest.Server
	reads *countingReader
	store *dirstore.Store
	now   atomic.Pointer[time.Time] // nil = time.Now
	read  atomic.Int64              // bytes the server read from its connections
}

// countingListener counts the bytes read from its connections.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, read: l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith is newHarness with the configuration changed by change.
// The archive sink is a fresh directory.
func newHarnessWith(t *testing.T, change func(*Config)) *harness {
	t.Helper()
	node := natstest.Start(t)
	nc, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	cfg := Config{AdminToken: adminToken}
	if change != nil {
		change(&cfg)
	}
	store, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, cfg: cfg, nc: nc, js: js, store: store, quota: &stubQuota{}}
	svc, err := New(context.Background(), cfg, js, store, h.quota,
		WithReader(func(r Reader) Reader { h.reads = &countingReader{Reader: r}; return h.reads }),
		WithClock(func() time.Time {
			if p := h.now.Load(); p != nil {
				return *p
			}
			return time.Now()
		}))
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	hs := httpserver.New(zerolog.Nop(), prometheus.NewRegistry())
	svc.Routes(hs.Echo())
	h.srv = httptest.NewUnstartedServer(hs.Echo())
	h.srv.Listener = &countingListener{Listener: h.srv.Listener, read: &h.read}
	h.srv.Start()
	t.Cleanup(h.srv.Close)
	t.Cleanup(svc.Close)
	return h
}

// run starts the live view until the test ends.
func (h *harness) run() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.svc.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
}

// client returns an HTTP client that keeps cookies and does not follow
// redirects.
func (h *harness) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (h *harness) do(c *http.Client, method, path string, form url.Values, hdr map[string]string) answer {
	h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

func (h *harness) get(c *http.Client, path string) answer {
	return h.do(c, http.MethodGet, path, nil, nil)
}

// bearer is the header of a request authenticated with the admin token.
var bearer = map[string]string{"Authorization": "Bearer " + adminToken}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfIn returns the CSRF token of the first form of a page.
func csrfIn(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field in page:\n%s", page)
	}
	return m[1]
}

// login logs a new browser-like client in through the form and returns it
// with the session's CSRF token.
func (h *harness) login() (*http.Client, string) {
	h.t.Helper()
	c := h.client()
	form := h.get(c, "/console/login")
	if form.status != http.StatusOK {
		h.t.Fatalf("login form: %d", form.status)
	}
	a := h.do(c, http.MethodPost, "/console/login", url.Values{"csrf": {csrfIn(h.t, form.body)}, "token": {adminToken}}, nil)
	if a.status != http.StatusSeeOther {
		h.t.Fatalf("login: %d %s", a.status, a.body)
	}
	page := h.get(c, "/console/accounts")
	if page.status != http.StatusOK {
		h.t.Fatalf("after login: %d %s", page.status, page.body)
	}
	return c, csrfIn(h.t, page.body)
}

func (h *harness) publish(subject string, meta event.Meta, data any, headers map[string]string) uint64 {
	h.t.Helper()
	raw, ok := data.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			h.t.Fatal(err)
		}
	}
	if meta.ID == "" {
		meta.ID = subject + "-" + time.Now().Format(time.RFC3339Nano)
	}
	if meta.Time.IsZero() {
		meta.Time = time.Now()
	}
	msg := event.Message(subject, meta, raw)
	for k, v := range headers {
		event.Set(msg, k, v)
	}
	ack, err := h.js.PublishMsg(context.Background(), msg)
	if err != nil {
		h.t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

// archive stores an image in the archive sink and returns its URI.
func (h *harness) archive(key string, raw []byte, contentType string) string {
	h.t.Helper()
	if _, err := h.store.Put(context.Background(), key, bytes.NewReader(raw), int64(len(raw)), blob.PutMeta{ContentType: contentType}); err != nil {
		h.t.Fatal(err)
	}
	return h.store.URI(key)
}

func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func testJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// emptyStore is an archive sink in a fresh directory.
func emptyStore(t *testing.T) *dirstore.Store {
	t.Helper()
	s, err := dirstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
