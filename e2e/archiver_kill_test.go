package e2e_test

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
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/blob/sink"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/archiver"
)

// TestArchiverReplicaKilledMidBatch stores task results with one image each
// through the ingress, archives them with two archiver replicas sharing the
// durable "archiver" consumer of INGRESS (R3), kills one replica while it
// holds unacknowledged messages (its connection drops, nothing is acked), and
// then takes down the node leading the consumer (shut down or SIGKILL) and restarts it.
//
// It proves that nothing is lost and nothing is doubled: every image ends up
// archived with its exact bytes, with exactly one sd.archive.stored event,
// the consumer has nothing pending or unacknowledged, the surviving replica
// resumes after the consumer's leader changed, and every node holds the whole
// ARCHIVE stream.
func TestArchiverReplicaKilledMidBatch(t *testing.T) {
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			testArchiverReplicaKilledMidBatch(t, f.deploy(t))
		})
	}
}

func testArchiverReplicaKilledMidBatch(t *testing.T, d *deployment) {
	const (
		images  = 80
		delay   = 150 * time.Millisecond // per fetch: 3 fetches × 2 replicas ≈ 40 images/s
		token   = "user-archive"
		workers = 6
		// perHost is how many of a replica's workers fetch from one source
		// host (the image server) at a time: half of them.
		perHost = workers / 2
	)
	setAckWait(t, d, archiver.ConsumerName, 2*time.Second)
	imgs := newImageServer(t, delay)
	d.archiveDir = t.TempDir()
	d.archiver = archiver.Config{AllowHosts: []string{imgs.host}, Workers: workers, URLLifetime: 10 * time.Minute}
	front := d.serveIngress(nil)
	p := newPlatform()
	acct := account.FromToken(token)

	type want struct {
		sha           string
		width, height int
	}
	wants := map[string]want{} // by task (invokeId)
	for i := range images {
		task := fmt.Sprintf("task-%02d", i)
		b := pngOf(uint64(i), 24+i, 16)
		u := imgs.serve(fmt.Sprintf("/img/%d.png", i), b)
		body := fmt.Appendf(nil, `{"success":true,"data":{"generatedImageId":"g","url":%q,"type":"png","width":%d,"height":16}}`, u, 24+i)
		if _, err := p.deliver(t.Context(), front.base, callback.BizTaskFinished, task, token, body); err != nil {
			t.Fatal(err)
		}
		wants[task] = want{sha: sha(b), width: 24 + i, height: 16}
	}

	archived := func() uint64 { return d.streamMsgs(contract.StreamArchive) }

	a := startArchiver(t, d)
	startArchiver(t, d)
	natstest.Eventually(t, 30*time.Second, "8 images archived", func() bool { return archived() >= 8 })
	// Mid-batch: hold the fetches until both replicas have every worker
	// busy, then kill a as a crash would: its connection drops with its
	// messages unacknowledged and its work in flight is abandoned (Run's
	// drain gives up and cancels it). Only then are b's fetches let go.
	imgs.hold()
	natstest.Eventually(t, 30*time.Second, "both replicas holding a full batch", func() bool { return imgs.waiting() == 2*perHost })
	a.kill()
	imgs.release()
	atKill := archived()
	natstest.Eventually(t, 30*time.Second, "the killed replica's batch redelivered", func() bool {
		return redelivered(t, d) >= perHost
	})

	leader := d.consumerLeader(contract.StreamIngress, archiver.ConsumerName)
	atDown := archived()
	down := time.Now()
	leader.stop()
	if atDown > images-10 {
		t.Logf("the consumer leader stopped late, after %d of %d images: its failover is barely exercised", atDown, images)
	}
	natstest.Eventually(t, 45*time.Second, "archiving resumed without the consumer leader", func() bool {
		n := archived()
		return n >= atDown+5 || n >= images
	})
	resumed := time.Since(down)
	leader.start()

	natstest.Eventually(t, 45*time.Second, "every image archived and nothing pending", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		c, err := d.js.Consumer(ctx, contract.StreamIngress, archiver.ConsumerName)
		if err != nil {
			return false
		}
		ci := c.CachedInfo()
		return ci.NumPending == 0 && ci.NumAckPending == 0 && archived() >= images
	})

	// Read ARCHIVE once every node holds what its leader holds: the server
	// may place readAll's consumer on the restarted node while it catches up.
	d.waitReplicasConverge(contract.StreamArchive, archived(), 30*time.Second)
	seen := map[string]int{}
	for _, m := range readAll(t, d.js, contract.StreamArchive, "") {
		if !strings.HasPrefix(m.Subject(), contract.SubjectArchiveStored) {
			t.Errorf("unexpected %s: %s", m.Subject(), m.Data())
			continue
		}
		var ev contract.ArchiveStored
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		seen[ev.TaskID]++
		w, ok := wants[ev.TaskID]
		switch {
		case !ok:
			t.Errorf("stored event for unknown task %q", ev.TaskID)
			continue
		case ev.Account != acct || ev.SHA256 != w.sha || ev.Width != w.width || ev.Height != w.height:
			t.Errorf("%s: stored %+v, want %+v of %s", ev.TaskID, ev, w, acct)
		case m.Headers().Get(nats.MsgIdHdr) != archiver.EventID(ev.Key):
			t.Errorf("%s: Nats-Msg-Id %q", ev.TaskID, m.Headers().Get(nats.MsgIdHdr))
		}
		b, err := os.ReadFile(filepath.Join(d.archiveDir, filepath.FromSlash(ev.Key)))
		if err != nil || sha(b) != w.sha {
			t.Errorf("%s: archived file %s: %v", ev.TaskID, ev.Key, err)
		}
	}
	for task := range wants {
		if seen[task] != 1 {
			t.Errorf("%s: %d stored events, want exactly 1", task, seen[task])
		}
	}
	d.waitReplicasConverge(contract.StreamArchive, images, 30*time.Second)

	// The killed replica's batch was fetched again by the other one.
	fetches := imgs.total()
	if fetches < images+perHost {
		t.Errorf("%d fetches for %d images: the killed replica's %d images were not fetched again", fetches, images, perHost)
	}
	t.Logf("replica killed holding %d messages after %d of %d images were archived; consumer leader %s stopped after %d, archiving resumed %s later; %d deliveries and %d fetches in all for %d images",
		perHost, atKill, images, leader.name(), atDown, resumed.Round(time.Millisecond), images+redelivered(t, d), fetches, images)
}

// redelivered is the number of deliveries of the archiver consumer beyond
// the first of each message (INGRESS holds only its messages here).
func redelivered(t *testing.T, d *deployment) int {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	c, err := d.js.Consumer(ctx, contract.StreamIngress, archiver.ConsumerName)
	if err != nil {
		return 0
	}
	ci := c.CachedInfo()
	return int(ci.Delivered.Consumer) - int(ci.Delivered.Stream)
}

// setAckWait shortens a durable INGRESS consumer's ack wait so that a killed
// replica's messages are redelivered within the test.
func setAckWait(t *testing.T, d *deployment, consumer string, wait time.Duration) {
	t.Helper()
	c, err := d.js.Consumer(t.Context(), contract.StreamIngress, consumer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	cfg.AckWait = wait
	if _, err := d.js.UpdateConsumer(t.Context(), contract.StreamIngress, cfg); err != nil {
		t.Fatal(err)
	}
}

func startArchiver(t *testing.T, d *deployment) *replica {
	t.Helper()
	nc, js := d.connect()
	store, err := sink.Open(sink.Config{Dir: d.archiveDir})
	if err != nil {
		t.Fatal(err)
	}
	cfg := d.archiver
	cfg.DrainTimeout = time.Second
	svc, err := archiver.New(t.Context(), cfg, js, store, prometheus.NewRegistry(),
		archiver.WithBackoff(50*time.Millisecond, 400*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return startReplica(t, "archiver", nc, svc.Run)
}

// imageServer serves PNGs on loopback, each after a delay, counting
// fetches. hold makes every fetch wait at a gate until release.
type imageServer struct {
	host string

	mu      sync.Mutex
	bodies  map[string][]byte
	fetches int
	held    int
	gate    chan struct{} // nil: open
}

func newImageServer(t *testing.T, delay time.Duration) *imageServer {
	s := &imageServer{bodies: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b, ok := s.bodies[r.URL.Path]
		s.fetches++
		gate := s.gate
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		if gate != nil {
			s.mu.Lock()
			s.held++
			s.mu.Unlock()
			select {
			case <-gate:
			case <-r.Context().Done():
			}
			s.mu.Lock()
			s.held--
			s.mu.Unlock()
			if r.Context().Err() != nil {
				return
			}
		}
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(s.release)
	s.host = srv.Listener.Addr().(*net.TCPAddr).AddrPort().String()
	return s
}

// serve publishes b under path and returns its URL.
func (s *imageServer) serve(path string, b []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodies[path] = b
	return "http://" + s.host + path
}

// hold makes the fetches that start from now on wait until release.
func (s *imageServer) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
}

// release lets every held fetch answer and opens the gate.
func (s *imageServer) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

// waiting is the number of fetches held at the gate.
func (s *imageServer) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

func (s *imageServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// pngOf returns a w×h PNG of a pattern that depends on seed.
func pngOf(seed uint64, w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			v := uint8(seed*31 + uint64(x*7+y*13))
			img.SetNRGBA(x, y, color.NRGBA{v, v ^ 0x5a, uint8(seed), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
