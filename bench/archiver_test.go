package bench

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/blob/s3store"
	"github.com/sdevents/sdevents/pkg/blob/sink"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/miniotest"
	"github.com/sdevents/sdevents/services/archiver"
)

// archiveImages is the number of images of BenchmarkArchiver
// (SDEVENTS_BENCH_ARCHIVE_IMAGES overrides it).
const archiveImages = 1000

// imageSet is n synthetic images of 0.5–4 MB: a real PNG header (so the
// archiver sniffs image/png and reads the dimensions) followed by bytes of
// a shared random pool at a per-image offset. Serving and putting them
// costs no generation work, for the archiver and the floor alike.
type imageSet struct {
	pool  []byte
	heads [][]byte
	sizes []int
	offs  []int
}

func newImageSet(tb testing.TB, n int) *imageSet {
	tb.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	s := &imageSet{pool: make([]byte, 8<<20)}
	for i := range s.pool {
		s.pool[i] = byte(r.Uint32())
	}
	for i := range n {
		var b bytes.Buffer
		if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 64+i%512, 64+i%256))); err != nil {
			tb.Fatal(err)
		}
		size := 512<<10 + r.IntN(3584<<10) // 0.5–4 MiB
		s.heads = append(s.heads, b.Bytes())
		s.sizes = append(s.sizes, size)
		s.offs = append(s.offs, r.IntN(len(s.pool)))
	}
	return s
}

// reader returns image i as a stream (hiding io.Seeker and io.ReaderAt, as
// a network body would).
func (s *imageSet) reader(i int) io.Reader {
	return io.MultiReader(bytes.NewReader(s.heads[i]), &cycle{pool: s.pool, at: s.offs[i], left: s.sizes[i] - len(s.heads[i])})
}

// cycle reads left bytes of pool from at, wrapping around: any size
// without holding it.
type cycle struct {
	pool     []byte
	at, left int
}

func (c *cycle) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.left)], c.pool[c.at:])
	c.at = (c.at + n) % len(c.pool)
	c.left -= n
	return n, nil
}

func (s *imageSet) total() int64 {
	var n int64
	for _, z := range s.sizes {
		n += int64(z)
	}
	return n
}

// serve serves image i at /img/<i>.png with its Content-Length.
func (s *imageSet) serve(tb testing.TB) string {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/img/"), ".png"))
		if err != nil || i < 0 || i >= len(s.sizes) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", strconv.Itoa(s.sizes[i]))
		io.Copy(w, s.reader(i))
	}))
	tb.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).AddrPort().String()
}

// BenchmarkArchiver archives images of 0.5–4 MB from a loopback HTTP source
// into MinIO through the whole service (INGRESS consumer, SSRF-guarded
// fetch, inspection, upload with digest, exactly-once ARCHIVE event), with
// archive.workers = 8, of which 4 fetch from the one source host at a time.
// The floor puts the same bytes into the same MinIO with minio-go directly,
// 4 at a time.
func BenchmarkArchiver(b *testing.B) {
	n := archiveImages
	if v, err := strconv.Atoi(os.Getenv("SDEVENTS_BENCH_ARCHIVE_IMAGES")); err == nil && v > 0 {
		n = v
	}
	// The floor PUTs 4 at a time; the archiver fetches 4 at a time from the
	// one source host, with archive.workers = 8 (at most half of a
	// replica's workers fetch from one host).
	const workers = 4
	set := newImageSet(b, n)
	host := set.serve(b)
	m := miniotest.Start(b)
	_, js := jetStream(b, false)
	mb := float64(set.total()) / 1e6
	runs := 0
	for b.Loop() {
		runs++
		// Floor: the same bytes, PUT directly.
		floorBucket := m.MakeBucket(b, "floor")
		start := time.Now()
		parallel(n, workers, func(i int) {
			if _, err := m.Client.PutObject(context.Background(), floorBucket, fmt.Sprintf("img/%d.png", i), set.reader(i),
				int64(set.sizes[i]), minio.PutObjectOptions{ContentType: "image/png"}); err != nil {
				b.Error(err)
			}
		})
		floor := time.Since(start)

		// The archiver, from INGRESS to ARCHIVE.
		cfg := archiver.Config{Workers: 2 * workers, AllowHosts: []string{host}, MaxBytes: 8 << 20}
		at := time.Now()
		for i := range n {
			publishTaskFinished(b, js, i, at, fmt.Sprintf(`{"success":true,"data":{"generatedImageId":"g","url":"http://%s/img/%d.png?Signature=s","type":"png"}}`, host, i))
		}
		svc, err := archiver.New(context.Background(), cfg, js, minioSink(b, m, "archive"), prometheus.NewRegistry(), archiver.WithLogger(zerolog.Nop()))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start = time.Now()
		go func() { done <- svc.Run(ctx) }()
		waitArchived(b, js, uint64(runs*n), 30*time.Minute)
		took := time.Since(start)
		cancel()
		<-done

		floorMBs, mbs := mb/floor.Seconds(), mb/took.Seconds()
		b.Logf("%d images, %.0f MB: floor %.1f MB/s (%.1f images/s), archiver %.1f MB/s (%.1f images/s), ratio %.2f",
			n, mb, floorMBs, float64(n)/floor.Seconds(), mbs, float64(n)/took.Seconds(), mbs/floorMBs)
		b.ReportMetric(mbs, "MB/s")
		b.ReportMetric(float64(n)/took.Seconds(), "images/s")
		b.ReportMetric(floorMBs, "floor-MB/s")
		b.ReportMetric(mbs/floorMBs, "ratio")
	}
}

// BenchmarkArchiverPeakRSS archives one 500 MB image from a loopback HTTP
// source into MinIO and reports the peak resident memory of this process
// while it does (VmHWM, reset through /proc/self/clear_refs just before).
// The process also runs the embedded nats-server and the HTTP source (which
// streams from an 8 MiB pool), so the figure bounds the archiver's from
// above; MinIO runs in its own process. The baseline (VmRSS just before) is
// reported beside it.
func BenchmarkArchiverPeakRSS(b *testing.B) {
	const size = 500 << 20
	set := newImageSet(b, 1)
	set.sizes[0] = size
	host := set.serve(b)
	m := miniotest.Start(b)
	_, js := jetStream(b, false)
	runs := 0
	for b.Loop() {
		runs++
		cfg := archiver.Config{AllowHosts: []string{host}, MaxBytes: 600 << 20}
		svc, err := archiver.New(context.Background(), cfg, js, minioSink(b, m, "big"), prometheus.NewRegistry(), archiver.WithLogger(zerolog.Nop()))
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		debug.FreeOSMemory()
		base := procStatus(b, "VmRSS")
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			b.Fatalf("reset the peak RSS: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- svc.Run(ctx) }()
		publishTaskFinished(b, js, 0, time.Now(), fmt.Sprintf(`{"success":true,"data":{"generatedImageId":"big","url":"http://%s/img/0.png","type":"png"}}`, host))
		waitArchived(b, js, uint64(runs), 10*time.Minute)
		took := time.Since(start)
		peak := procStatus(b, "VmHWM")
		cancel()
		<-done
		b.Logf("500 MB image in %s (%.1f MB/s): peak RSS %.1f MB (%.1f MB before)", took.Round(time.Millisecond),
			float64(size)/1e6/took.Seconds(), float64(peak)/(1<<20), float64(base)/(1<<20))
		b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(float64(base)/(1<<20), "base-RSS-MiB")
	}
}

// publishTaskFinished stores a callback in INGRESS as the ingress does.
func publishTaskFinished(tb testing.TB, js jetstream.JetStream, i int, at time.Time, body string) {
	tb.Helper()
	id := fmt.Sprintf("bench-%d-%d", at.UnixNano(), i)
	msg := event.Message("sd.callback.default.sdTaskFinished", event.Meta{ID: id, Source: "/sdevents/callbacks/default",
		Type: "sd.callback.sdTaskFinished", Time: at, Subject: "a_bench", ContentType: "application/json"}, []byte(body))
	event.Set(msg, event.HeaderSDSource, "default")
	event.Set(msg, event.HeaderSDAccount, "a_bench")
	event.Set(msg, event.HeaderInvokeID, fmt.Sprintf("inv-%d", i))
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		tb.Fatal(err)
	}
}

// waitArchived polls until ARCHIVE (of a JetStream fresh for the
// benchmark, account a_bench only) holds n events, and fails on any
// sd.archive.failed event.
func waitArchived(tb testing.TB, js jetstream.JetStream, n uint64, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := js.Stream(context.Background(), contract.StreamArchive)
		if err != nil {
			tb.Fatal(err)
		}
		if got := st.CachedInfo().State.Msgs; got >= n {
			if st.CachedInfo().State.NumSubjects > 1 {
				tb.Fatalf("ARCHIVE holds failures")
			}
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("ARCHIVE: %d events after %s, want %d", st.CachedInfo().State.Msgs, timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parallel runs f(0..n-1) on workers goroutines.
func parallel(n, workers int, f func(int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// procStatus returns a size field of /proc/self/status in bytes.
func procStatus(tb testing.TB, field string) int64 {
	tb.Helper()
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// minioSink is a fresh bucket of m, named after prefix, as the archive sink.
func minioSink(tb testing.TB, m *miniotest.Server, prefix string) sink.Store {
	tb.Helper()
	s, err := sink.Open(sink.Config{S3: s3store.Config{Endpoint: m.Endpoint, Bucket: miniotest.BucketName(prefix), AccessKey: m.AccessKey, SecretKey: m.SecretKey}})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
