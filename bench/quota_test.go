package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/services/ingress"
	"github.com/sdevents/sdevents/services/quota"
)

const benchAdminToken = "bench-admin"

// serveQuota runs the ingress and one quota replica in one process, as
// `sdevents run` does, and returns the base URL.
func serveQuota(tb testing.TB, nc *nats.Conn) string {
	tb.Helper()
	cfg := config.Default()
	cfg.Callbacks = []config.Callback{{Name: "default", Keys: []config.Key{{AK: benchKey.AK, SK: config.Secret(benchKey.SK)}}}}
	cfg.Admin.Token = benchAdminToken
	cfg.Log.Level = "warn"
	reg := prometheus.NewRegistry()
	srv := httpserver.New(zerolog.New(io.Discard), reg)
	ctx, cancel := context.WithCancel(context.Background())
	in, err := ingress.New(ctx, cfg, nc, reg)
	if err != nil {
		tb.Fatal(err)
	}
	q, err := quota.New(ctx, cfg, nc, reg)
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

// reservations prepares n signed apiAccessPreInvoke callbacks over accounts
// users, after granting each user enough credits.
func reservations(tb testing.TB, base string, n, accounts int) []Request {
	tb.Helper()
	tokens := make([]string, accounts)
	encs := make([]string, accounts)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("bench-user-%d-%d", i, time.Now().UnixNano())
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/admin/accounts/token:"+tokens[i]+"/credits",
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
		var err2 error
		if encs[i], err2 = callback.EncryptToken(tokens[i], benchKey.SK, nil); err2 != nil {
			tb.Fatal(err2)
		}
	}
	body := []byte(`{"batch_size":1,"n_iter":1}`)
	reqs := make([]Request, n)
	now := time.Now()
	for i := range reqs {
		u := i % accounts
		p := callback.Params{APIID: "api-txt2img", BizType: callback.BizAPIPreInvoke, InvokeID: fmt.Sprintf("r-%d-%d", now.UnixNano(), i),
			APIToken: encs[u], Nonce: strconv.Itoa(i), Timestamp: strconv.FormatInt(now.UnixMilli(), 10)}
		p.Sign = callback.Sign(benchKey, p, body, tokens[u])
		q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
			"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
		reqs[i] = Request{URL: base + "/v1/callbacks/default?" + q.Encode(), Body: body}
	}
	return reqs
}

// BenchmarkQuota measures signed apiAccessPreInvoke callbacks end to end
// (ingress store, quota RPC, ledger append with its expiry timer): closed loop
// at 64 connections for the throughput, and open loop at a fixed rate for the
// latency, over one account (every reservation contends on one subject) and
// over 1,000 accounts. The floor is the ingress benchmark's, in the same run.
func BenchmarkQuota(b *testing.B) {
	n := 10000
	if testing.Short() {
		n = 2000
	}
	for _, tc := range []struct {
		accounts, rate int
	}{{1, 2000}, {1000, 5000}} {
		b.Run(fmt.Sprintf("accounts=%d", tc.accounts), func(b *testing.B) {
			for range b.N {
				nc, js := jetStream(b, false)
				base := serveQuota(b, nc)
				floorURL := serveFloor(b, js)
				floorReqs := make([]Request, n)
				for i := range floorReqs {
					floorReqs[i] = Request{URL: floorURL, Body: []byte(`{"batch_size":1,"n_iter":1}`)}
				}
				floor := Run(context.Background(), floorReqs, conns)
				closed := Run(context.Background(), reservations(b, base, n, tc.accounts), conns)
				open := RunRate(context.Background(), reservations(b, base, n, tc.accounts), tc.rate, 256)
				if closed.Errors+open.Errors+floor.Errors > 0 {
					b.Fatalf("errors: closed %v, open %v, floor %v", closed, open, floor)
				}
				b.Logf("floor:             %v", floor)
				b.Logf("closed loop (64):  %v", closed)
				b.Logf("open loop %d/s: %v", tc.rate, open)
				b.ReportMetric(closed.PerSecond(), "reservations/s")
				b.ReportMetric(closed.PerSecond()/floor.PerSecond(), "ratio")
				b.ReportMetric(float64(open.P50.Microseconds()), "p50-µs@rate")
				b.ReportMetric(float64(open.P99.Microseconds()), "p99-µs@rate")
			}
		})
	}
}
