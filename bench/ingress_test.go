package bench

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/natsrv"
	"github.com/sdevents/sdevents/services/ingress"
	"github.com/sdevents/sdevents/streams"
)

var benchKey = callback.Key{AK: "AK-bench", SK: "SK-bench"}

// jetStream starts an embedded server with the given fsync policy, applies
// the streams and returns a connection.
func jetStream(tb testing.TB, syncAlways bool) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	srv, err := natsrv.Start(natsrv.Options{Addr: "127.0.0.1:0", StoreDir: filepath.Join(tb.TempDir(), "js"),
		SyncAlways: syncAlways, SyncInterval: 2 * time.Minute, MaxPayload: 8 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if err := streams.ApplyEmbedded(context.Background(), js, 1); err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// benchIngress is the ingress of the benchmarks: the defaults and the
// bench's callback source.
func benchIngress() ingress.Config {
	return ingress.Config{Callbacks: []ingress.CallbackSource{{Name: "default", Keys: []callback.Key{benchKey}}}}
}

// serveIngress runs the real ingress (every check, both de-duplication tiers)
// on a loopback port and returns its base URL.
func serveIngress(tb testing.TB, js jetstream.JetStream) string {
	tb.Helper()
	reg := prometheus.NewRegistry()
	srv := httpserver.New(zerolog.New(io.Discard), reg)
	in, err := ingress.New(context.Background(), benchIngress(), js, reg)
	if err != nil {
		tb.Fatal(err)
	}
	in.Routes(srv.Echo())
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = srv.Run(ctx) }()
	go func() { _ = in.Run(ctx) }()
	tb.Cleanup(func() { cancel(); _ = srv.Shutdown(context.Background()) })
	for in.Ready(ctx) != nil {
		time.Sleep(10 * time.Millisecond)
	}
	return "http://" + srv.Addr()
}

// serveFloor runs the least an ingress can do on a loopback port and returns
// its URL (see floorHandler).
func serveFloor(tb testing.TB, js jetstream.JetStream) string {
	tb.Helper()
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: floorHandler(js)}
	ln, err := netListen()
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/floor"
}

// floorHandler is the least an ingress can do, at POST /floor: read the
// body, publish it to js, answer 200 after the ack. No checks, no headers.
func floorHandler(js jetstream.JetStream) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /floor", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err == nil {
			_, err = js.Publish(r.Context(), "sd.callback.floor.sdTaskFinished", body)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"success":true}`))
	})
	return mux
}

// signedTaskFinished prepares n distinct signed sdTaskFinished callbacks.
func signedTaskFinished(tb testing.TB, base string, n int) []Request {
	tb.Helper()
	reqs := make([]Request, n)
	now := time.Now()
	enc, err := callback.EncryptToken("bench-user", benchKey.SK, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range reqs {
		body := []byte(`{"success":true,"data":{"generatedImageId":"g-` + strconv.Itoa(i) + `","url":"https://example.com/` + strconv.Itoa(i) + `.png","type":"png","width":"512","height":512}}`)
		p := callback.Params{APIID: "api-txt2img", BizType: callback.BizTaskFinished, InvokeID: "i-" + strconv.Itoa(i),
			APIToken: enc, Nonce: strconv.Itoa(i), Timestamp: strconv.FormatInt(now.UnixMilli(), 10)}
		p.Sign = callback.Sign(benchKey, p, body, "bench-user")
		q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
			"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
		reqs[i] = Request{URL: base + "/v1/callbacks/default?" + q.Encode(), Body: body}
	}
	return reqs
}

const conns = 64

// BenchmarkIngress measures signed asynchronous callbacks per second and
// p50/p99 through the full ingress at 64 keep-alive connections, against the
// floor, for both fsync policies. Reported: ingress/s, floor/s, ratio, and
// the process's CPU time per request of each.
func BenchmarkIngress(b *testing.B) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for _, mode := range []struct {
		name   string
		always bool
	}{{"sync=interval", false}, {"sync=always", true}} {
		b.Run(mode.name, func(b *testing.B) {
			for range b.N {
				_, js := jetStream(b, mode.always)
				base := serveIngress(b, js)
				floorURL := serveFloor(b, js)
				floorReqs := make([]Request, n)
				for i, r := range signedTaskFinished(b, base, n) {
					floorReqs[i] = Request{URL: floorURL, Body: r.Body}
				}
				reqs := signedTaskFinished(b, base, n)
				// Warm both paths, then alternate floor and ingress rounds so
				// that both see the same machine; report the median round.
				Run(context.Background(), floorReqs[:500], conns)
				const rounds = 5
				var floors, gots []Result
				var floorCPU, gotCPU []float64 // CPU-µs of the process per request
				per := n / rounds
				for r := range rounds {
					runtime.GC()
					c0 := cpuTime()
					floors = append(floors, Run(context.Background(), floorReqs[r*per:(r+1)*per], conns))
					floorCPU = append(floorCPU, float64((cpuTime()-c0).Microseconds())/float64(per))
					runtime.GC()
					c0 = cpuTime()
					gots = append(gots, Run(context.Background(), reqs[r*per:(r+1)*per], conns))
					gotCPU = append(gotCPU, float64((cpuTime()-c0).Microseconds())/float64(per))
				}
				floor, got := median(floors), median(gots)
				for r := range rounds {
					if gots[r].Errors > 0 || floors[r].Errors > 0 {
						b.Fatalf("errors: ingress %v, floor %v", gots[r], floors[r])
					}
				}
				b.Logf("floor:   %v", floor)
				b.Logf("ingress: %v", got)
				b.ReportMetric(got.PerSecond(), "ingress/s")
				b.ReportMetric(floor.PerSecond(), "floor/s")
				b.ReportMetric(got.PerSecond()/floor.PerSecond(), "ratio")
				b.ReportMetric(float64(got.P50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(got.P99.Microseconds()), "p99-µs")
				// CPU time per request (load generator, ingress and server share
				// the process) swings far less with other work on the machine
				// than throughput does.
				slices.Sort(floorCPU)
				slices.Sort(gotCPU)
				b.ReportMetric(floorCPU[rounds/2], "floor-cpu-µs/req")
				b.ReportMetric(gotCPU[rounds/2], "ingress-cpu-µs/req")
			}
		})
	}
}
