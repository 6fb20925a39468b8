package archiver_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/blob/s3store"
	"github.com/sdevents/sdevents/pkg/blob/sink"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/fetch"
	"github.com/sdevents/sdevents/pkg/miniotest"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/archiver"
)

// env is one test's JetStream, image server and configuration.
type env struct {
	t      *testing.T
	node   *natstest.Node
	js     jetstream.JetStream
	cfg    archiver.Config
	sink   sink.Config
	images *imageServer
	seq    atomic.Int64
}

// newEnv starts JetStream with the project's streams and an image server
// allowed by cfg.AllowHosts. The sink is a directory unless the test points
// it at a MinIO.
func newEnv(t *testing.T) *env {
	t.Helper()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	e := &env{t: t, node: node, js: js, images: newImageServer(t)}
	e.cfg = archiver.Config{Workers: archiver.DefaultWorkers, AllowHosts: []string{e.images.host}, URLLifetime: time.Minute}
	e.sink.Dir = t.TempDir()
	return e
}

// useMinIO makes the sink a fresh bucket (created by the archiver) of m.
func (e *env) useMinIO(m *miniotest.Server) string {
	bucket := miniotest.BucketName("sink")
	e.sink.S3 = s3store.Config{Endpoint: m.Endpoint, Bucket: bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey}
	return bucket
}

// setAckWait shortens the archiver consumer's ack wait (2 min in the file).
func (e *env) setAckWait(d time.Duration) {
	e.t.Helper()
	ctx := e.t.Context()
	c, err := e.js.Consumer(ctx, contract.StreamIngress, archiver.ConsumerName)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	cfg.AckWait = d
	if _, err := e.js.UpdateConsumer(ctx, contract.StreamIngress, cfg); err != nil {
		e.t.Fatal(err)
	}
}

// replica is one running archiver with its own NATS connection.
type replica struct {
	t      *testing.T
	svc    *archiver.Service
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// start runs an archiver replica until the test ends.
func (e *env) start(opts ...archiver.Option) *replica {
	e.t.Helper()
	return e.run(e.cfg, nil, opts...)
}

// startWith runs an archiver replica whose metrics go to reg (none when
// nil) until the test ends.
func (e *env) startWith(reg prometheus.Registerer, opts ...archiver.Option) *replica {
	e.t.Helper()
	return e.run(e.cfg, reg, opts...)
}

// startDraining runs an archiver replica with a drain limit of its own; a
// nanosecond lets nothing in flight finish (kill).
func (e *env) startDraining(limit time.Duration, opts ...archiver.Option) *replica {
	e.t.Helper()
	cfg := e.cfg
	cfg.DrainTimeout = limit
	return e.run(cfg, nil, opts...)
}

// run runs an archiver replica of cfg, on its own connection and with the
// sink opened anew, until the test ends.
func (e *env) run(cfg archiver.Config, reg prometheus.Registerer, opts ...archiver.Option) *replica {
	e.t.Helper()
	nc, js := natstest.Connect(e.t, e.node.URL())
	store, err := sink.Open(e.sink)
	if err != nil {
		e.t.Fatal(err)
	}
	base := []archiver.Option{
		archiver.WithBackoff(50*time.Millisecond, 400*time.Millisecond),
		archiver.WithHTTPConfig(func(c *fetch.HTTPConfig) {
			c.Resolver = loopbackResolver{}
			c.ReadTimeout = 500 * time.Millisecond
		}),
		archiver.WithLogger(zerolog.New(zerolog.NewTestWriter(e.t)).Level(zerolog.WarnLevel)),
	}
	svc, err := archiver.New(e.t.Context(), cfg, js, store, reg, append(base, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{t: e.t, svc: svc, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	e.t.Cleanup(r.stop)
	return r
}

// stop ends the replica gracefully and waits for Run to return. It may be
// called more than once.
func (r *replica) stop() {
	r.once.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			r.t.Errorf("archiver Run: %v", err)
		}
	})
}

// kill drops the replica's connection, then cancels its work: what JetStream
// sees of a crash. Start the replica with startDraining(time.Nanosecond) so
// that nothing in flight finishes.
func (r *replica) kill() {
	r.nc.Close()
	r.stop()
}

// loopbackResolver resolves every name to 127.0.0.1 without DNS, so tests
// can name "other" hosts without any traffic leaving the machine.
type loopbackResolver struct{}

func (loopbackResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// publishCallback stores an sdTaskFinished callback in INGRESS as the
// ingress does, with a fresh ce-id, and returns it.
func (e *env) publishCallback(account, invokeID string, at time.Time, body any) *nats.Msg {
	e.t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	msg := event.Message("sd.callback.default.sdTaskFinished", event.Meta{
		ID: fmt.Sprintf("cb-test-%d", e.seq.Add(1)), Source: "/sdevents/callbacks/default", Type: "sd.callback.sdTaskFinished",
		Time: at, Subject: account, ContentType: "application/json",
	}, raw)
	event.Set(msg, event.HeaderSDSource, "default")
	event.Set(msg, event.HeaderSDAccount, account)
	event.Set(msg, event.HeaderBizType, "sdTaskFinished")
	event.Set(msg, event.HeaderInvokeID, invokeID)
	e.publish(msg)
	return msg
}

// publishSNS stores an SNS Notification whose Message is message.
func (e *env) publishSNS(account, taskID string, at time.Time, message any) *nats.Msg {
	e.t.Helper()
	m, err := json.Marshal(message)
	if err != nil {
		e.t.Fatal(err)
	}
	id := fmt.Sprintf("sns-test-%d", e.seq.Add(1))
	envelope, err := json.Marshal(map[string]string{
		"Type": "Notification", "MessageId": id, "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
		"Message": string(m), "Timestamp": at.UTC().Format(time.RFC3339), "SignatureVersion": "1",
	})
	if err != nil {
		e.t.Fatal(err)
	}
	msg := event.Message("sd.sns.eks.Notification", event.Meta{
		ID: id, Source: "/sdevents/sns/eks", Type: "sd.sns.Notification", Time: at, Subject: account, ContentType: "application/json",
	}, envelope)
	event.Set(msg, event.HeaderSDSource, "eks")
	event.Set(msg, event.HeaderSDAccount, account)
	event.Set(msg, event.HeaderSNSType, "Notification")
	event.Set(msg, event.HeaderSNSMsgID, id)
	event.Set(msg, event.HeaderTaskID, taskID)
	e.publish(msg)
	return msg
}

func (e *env) publish(msg *nats.Msg) {
	e.t.Helper()
	if _, err := e.js.PublishMsg(e.t.Context(), msg); err != nil {
		e.t.Fatal(err)
	}
}

// republish stores msg again under a new ce-id, as a platform retry past
// every de-duplication horizon would be.
func (e *env) republish(msg *nats.Msg) {
	e.t.Helper()
	c := &nats.Msg{Subject: msg.Subject, Data: msg.Data, Header: nats.Header{}}
	for k, v := range msg.Header {
		c.Header[k] = append([]string(nil), v...)
	}
	id := fmt.Sprintf("again-%d", e.seq.Add(1))
	c.Header.Set(event.HeaderID, id)
	c.Header.Set(nats.MsgIdHdr, id)
	e.publish(c)
}

// archiveEvent is an ARCHIVE message, decoded.
type archiveEvent struct {
	Seq     uint64
	Subject string
	ID      string
	Stored  contract.ArchiveStored
	Failed  contract.ArchiveFailed
}

func (a archiveEvent) stored() bool {
	return strings.HasPrefix(a.Subject, contract.SubjectArchiveStored)
}

// events returns every message of ARCHIVE.
func (e *env) events() []archiveEvent {
	e.t.Helper()
	ctx := e.t.Context()
	s, err := e.js.Stream(ctx, contract.StreamArchive)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []archiveEvent
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatal(err)
		}
		a := archiveEvent{Seq: seq, Subject: m.Subject, ID: m.Header.Get(nats.MsgIdHdr)}
		if a.stored() {
			err = json.Unmarshal(m.Data, &a.Stored)
		} else {
			err = json.Unmarshal(m.Data, &a.Failed)
		}
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// consumerIdle reports whether a durable consumer of stream has nothing
// pending or unacknowledged.
func (e *env) consumerIdle(stream, name string) bool {
	c, err := e.js.Consumer(e.t.Context(), stream, name)
	if err != nil {
		return false
	}
	ci := c.CachedInfo()
	return ci.NumPending == 0 && ci.NumAckPending == 0
}

// streamMsgs is the number of messages stream holds.
func (e *env) streamMsgs(stream string) uint64 {
	e.t.Helper()
	s, err := e.js.Stream(e.t.Context(), stream)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// waitSettled waits until the archiver consumer has nothing pending or
// unacknowledged and ARCHIVE holds want events, and returns them.
func (e *env) waitSettled(want int, timeout time.Duration) []archiveEvent {
	e.t.Helper()
	var evs []archiveEvent
	natstest.Eventually(e.t, timeout, fmt.Sprintf("%d ARCHIVE events and an idle consumer", want), func() bool {
		c, err := e.js.Consumer(e.t.Context(), contract.StreamIngress, archiver.ConsumerName)
		if err != nil {
			return false
		}
		ci := c.CachedInfo()
		if ci.NumPending != 0 || ci.NumAckPending != 0 {
			return false
		}
		evs = e.events()
		return len(evs) >= want
	})
	if len(evs) != want {
		e.t.Fatalf("ARCHIVE holds %d events, want %d: %+v", len(evs), want, evs)
	}
	return evs
}

// imageServer serves generated PNGs and misbehaving answers on loopback.
type imageServer struct {
	*httptest.Server
	host string // 127.0.0.1:port

	mu       sync.Mutex
	routes   map[string]http.HandlerFunc
	requests map[string]int
}

func newImageServer(t *testing.T) *imageServer {
	s := &imageServer{routes: map[string]http.HandlerFunc{}, requests: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		h := s.routes[r.URL.Path]
		s.requests[r.URL.Path]++
		s.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	t.Cleanup(s.Close)
	s.host = s.Listener.Addr().(*net.TCPAddr).AddrPort().String()
	return s
}

// handle routes path to h and returns the URL of path on the server.
func (s *imageServer) handle(path string, h http.HandlerFunc) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[path] = h
	return "http://" + s.host + path
}

// serve serves body as a PNG under path and returns its URL with a signed
// query string, as the platform's URLs have.
func (s *imageServer) serve(path string, body []byte) string {
	return s.handle(path, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("Signature") == "" {
			http.Error(w, "unsigned", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Write(body)
	}) + "?Expires=1700000000&Signature=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
}

func (s *imageServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

// pngOf returns a w×h PNG of noise (so it does not compress away).
func pngOf(t testing.TB, seed uint64, w, h int) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(r.Uint32()), uint8(r.Uint32()), uint8(r.Uint32()), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// archiverKey is the key of image "g" of a callback task.
func archiverKey(account string, at time.Time, task string) string {
	return archiver.ObjectKey(account, at, task, "g", "png")
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// lines returns the JSON log lines written so far, decoded.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(b.b.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}
