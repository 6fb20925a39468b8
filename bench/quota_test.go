package bench

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/services/ingress"
	"github.com/sdevents/sdevents/services/quota"
)

const benchAdminToken = "bench-admin"

// serveQuota runs the ingress and one quota replica in one process, as
// `sdevents run` does, and returns the base URL.
func serveQuota(tb testing.TB, js jetstream.JetStream) string {
	tb.Helper()
	reg := prometheus.NewRegistry()
	srv := httpserver.New(zerolog.New(io.Discard), reg)
	ctx, cancel := context.WithCancel(context.Background())
	in, err := ingress.New(ctx, benchIngress(), js, reg)
	if err != nil {
		tb.Fatal(err)
	}
	q, err := quota.New(ctx, quota.Config{AdminToken: benchAdminToken}, js, reg)
	if err != nil {
		tb.Fatal(err)
	}
	in.Routes(srv.Echo())
	q.Routes(srv.Echo())
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Run(ctx) }()
	go func() { _ = in.Run(ctx) }()
	go func() { _ = q.Run(ctx) }()
	tb.Cleanup(func() { cancel(); _ = srv.Shutdown(context.Background()) })
	for in.Ready(ctx) != nil {
		time.Sleep(10 * time.Millisecond)
	}
	return "http://" + srv.Addr()
}

// syncFloorSubject is the request subject of the synchronous floor.
const syncFloorSubject = "bench.floor.decide"

// serveSyncFloor runs the least a synchronous answer takes: an HTTP handler
// that reads the body and asks over NATS request/reply, and a responder that
// publishes the body to JetStream, waits for the ack and replies, each
// request in its own goroutine (as the quota service does). One
// request/reply and one acknowledged publish on the service's connection; no
// checks, no state. It returns the floor's URL.
func serveSyncFloor(tb testing.TB, nc *nats.Conn, js jetstream.JetStream) string {
	tb.Helper()
	sub, err := nc.Subscribe(syncFloorSubject, func(m *nats.Msg) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if _, err := js.Publish(ctx, "sd.callback.floor.apiAccessPreInvoke", m.Data); err != nil {
				_ = m.Respond([]byte(`{"success":false}`))
				return
			}
			_ = m.Respond([]byte(`{"success":true}`))
		}()
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sub.Unsubscribe() })
	mux := http.NewServeMux()
	mux.HandleFunc("POST /floor", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var resp *nats.Msg
		if err == nil {
			resp, err = nc.RequestWithContext(r.Context(), syncFloorSubject, body)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(resp.Data)
	})
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: mux}
	ln, err := netListen()
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/floor"
}

// quotaLoad makes signed apiAccessPreInvoke callbacks for a set of accounts
// granted enough credits.
type quotaLoad struct {
	base   string
	tokens []string // the users' tokens
	encs   []string // each encrypted as the platform sends it
	next   int      // requests made so far: each gets its own invokeId
}

// grantAccounts grants each of accounts new users enough credits for any
// run.
func grantAccounts(tb testing.TB, base string, accounts int) *quotaLoad {
	tb.Helper()
	l := &quotaLoad{base: base, tokens: make([]string, accounts), encs: make([]string, accounts)}
	for i := range l.tokens {
		l.tokens[i] = fmt.Sprintf("bench-user-%d-%d", i, time.Now().UnixNano())
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/admin/accounts/token:"+l.tokens[i]+"/credits",
			bytes.NewReader([]byte(`{"credits": 1000000000}`)))
		req.Header.Set("Authorization", "Bearer "+benchAdminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			tb.Fatalf("grant: %d", resp.StatusCode)
		}
		if l.encs[i], err = callback.EncryptToken(l.tokens[i], benchKey.SK, nil); err != nil {
			tb.Fatal(err)
		}
	}
	return l
}

// reservations prepares n signed apiAccessPreInvoke callbacks of one credit,
// spread over the accounts in turn, each with an invokeId of its own.
func (l *quotaLoad) reservations(n int) []Request {
	body := []byte(`{"batch_size":1,"n_iter":1}`)
	reqs := make([]Request, n)
	now := time.Now()
	for i := range reqs {
		k := l.next + i
		u := k % len(l.tokens)
		p := callback.Params{APIID: "api-txt2img", BizType: callback.BizAPIPreInvoke, InvokeID: fmt.Sprintf("r-%d-%d", now.UnixNano(), k),
			APIToken: l.encs[u], Nonce: strconv.Itoa(k), Timestamp: strconv.FormatInt(now.UnixMilli(), 10)}
		p.Sign = callback.Sign(benchKey, p, body, l.tokens[u])
		q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
			"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
		reqs[i] = Request{URL: l.base + "/v1/callbacks/default?" + q.Encode(), Body: body}
	}
	l.next += n
	return reqs
}

// floorRequests prepares n requests to the synchronous floor with the body of
// a reservation.
func floorRequests(url string, n int) []Request {
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{URL: url, Body: []byte(`{"batch_size":1,"n_iter":1}`)}
	}
	return reqs
}

// loadAverage is the machine's 1-minute load average, for the log.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// BenchmarkQuota measures signed apiAccessPreInvoke callbacks end to end
// (sign claim, ingress store, quota RPC, ledger append with its expiry timer),
// one quota replica, over one account (every reservation contends on one
// subject) at 2,000/s, and over 1,000 accounts at 5,000/s and at 2,000/s.
//
// The floor is serveSyncFloor: HTTP, one NATS request/reply and one
// acknowledged JetStream publish. Latency is measured open loop — each
// request sent at its due time whether or not earlier ones were answered,
// timed from that due time — in alternating rounds of the floor and the
// service at the same rate; the round with the median p99 is reported, with
// its ratio to the floor's median p99, and the process's CPU time per
// request. A closed loop at 64 connections gives the throughput of both.
func BenchmarkQuota(b *testing.B) {
	n, seconds, rounds := 10000, 5, 3
	if testing.Short() {
		n, seconds, rounds = 2000, 1, 1
	}
	for _, tc := range []struct {
		accounts, rate int
	}{{1, 2000}, {1000, 5000}, {1000, 2000}} {
		b.Run(fmt.Sprintf("accounts=%d/rate=%d", tc.accounts, tc.rate), func(b *testing.B) {
			for range b.N {
				nc, js := jetStream(b, false)
				base := serveQuota(b, js)
				floorURL := serveSyncFloor(b, nc, js)
				load := grantAccounts(b, base, tc.accounts)
				b.Logf("load average %s", loadAverage())

				floorClosed := Run(context.Background(), floorRequests(floorURL, n), conns)
				closed := Run(context.Background(), load.reservations(n), conns)
				b.Logf("closed loop (64), floor: %v", floorClosed)
				b.Logf("closed loop (64), quota: %v", closed)

				warm, per := tc.rate/2, tc.rate*seconds
				var floors, quotas []Result
				var floorCPU, quotaCPU []float64
				for r := range rounds {
					runtime.GC()
					c0 := cpuTime()
					floors = append(floors, RunRate(context.Background(), floorRequests(floorURL, warm+per), tc.rate, 256, warm))
					floorCPU = append(floorCPU, float64((cpuTime()-c0).Microseconds())/float64(warm+per))
					reqs := load.reservations(warm + per)
					runtime.GC()
					c0 = cpuTime()
					quotas = append(quotas, RunRate(context.Background(), reqs, tc.rate, 256, warm))
					quotaCPU = append(quotaCPU, float64((cpuTime()-c0).Microseconds())/float64(warm+per))
					b.Logf("round %d at %d/s: floor %v, %.0f CPU-µs/req", r+1, tc.rate, floors[r], floorCPU[r])
					b.Logf("round %d at %d/s: quota %v, %.0f CPU-µs/req", r+1, tc.rate, quotas[r], quotaCPU[r])
				}
				for _, res := range append([]Result{floorClosed, closed}, append(floors, quotas...)...) {
					if res.Errors > 0 {
						b.Fatalf("errors: %v", res)
					}
				}
				b.Logf("load average %s", loadAverage())
				floor, got := medianP99(floors), medianP99(quotas)
				slices.Sort(floorCPU)
				slices.Sort(quotaCPU)
				b.ReportMetric(closed.PerSecond(), "reservations/s")
				b.ReportMetric(closed.PerSecond()/floorClosed.PerSecond(), "ratio")
				b.ReportMetric(float64(got.P50.Microseconds()), "p50-µs@rate")
				b.ReportMetric(float64(got.P99.Microseconds()), "p99-µs@rate")
				b.ReportMetric(float64(got.P999.Microseconds()), "p99.9-µs@rate")
				b.ReportMetric(float64(floor.P99.Microseconds()), "floor-p99-µs@rate")
				b.ReportMetric(float64(got.P99)/float64(floor.P99), "p99/floor")
				b.ReportMetric(quotaCPU[len(quotaCPU)/2], "cpu-µs/req")
				b.ReportMetric(floorCPU[len(floorCPU)/2], "floor-cpu-µs/req")
			}
		})
	}
}

// medianP99 returns the result with the median p99.
func medianP99(rs []Result) Result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Result) int { return cmp.Compare(a.P99, b.P99) })
	return s[len(s)/2]
}
