package quota_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// BenchmarkReserveHTTP measures signed apiAccessPreInvoke callbacks over real
// HTTP, end to end (ingress store, RPC, ledger append with its expiry timer),
// at 64 concurrent connections against one quota replica, spread over one
// account (full contention on one subject) and over 1,000 accounts. It
// reports reservations per second and the p50/p99 latency.
func BenchmarkReserveHTTP(b *testing.B) {
	for _, accounts := range []int{1, 1000} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			benchReserve(b, accounts, 64)
		})
	}
}

func benchReserve(b *testing.B, accounts, conns int) {
	cfg := testConfig()
	cfg.Log.Level = "warn"
	d := start(b, cfg, 1)
	tokens := make([]string, accounts)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("bench-user-%d", i)
		d.grant(tokens[i], 1_000_000_000, "bench")
	}
	// Requests are signed up front so that signing is not measured.
	type request struct{ url string }
	body := []byte(`{"batch_size":1,"n_iter":1}`)
	reqs := make([]request, b.N)
	for i := range reqs {
		token := tokens[i%accounts]
		enc, err := callback.EncryptToken(token, testKey.SK, nil)
		if err != nil {
			b.Fatal(err)
		}
		p := callback.Params{APIID: "api-1", BizType: callback.BizAPIPreInvoke, InvokeID: fmt.Sprintf("b-%d-%d", time.Now().UnixNano(), i),
			APIToken: enc, Nonce: strconv.Itoa(i), Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
		p.Sign = callback.Sign(testKey, p, body, token)
		q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
			"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
		reqs[i] = request{d.base + "/v1/callbacks/default?" + q.Encode()}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) {
					return
				}
				t0 := time.Now()
				resp, err := client.Post(reqs[i].url, "application/json", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != http.StatusOK || !bytes.Contains(raw, []byte(`"success":true`)) {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d reservations failed", n, b.N)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/took.Seconds(), "reservations/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkColdLoad measures a replica loading an account of 30,000 events
// over 30 days that it has never seen (the first decision on it after a
// start or an eviction): from the first event, as an account without
// snapshots loads, and from its latest snapshot (quota.snapshot_every =
// 1000), which holds the outcomes of the last quota.decided_retention. It
// reports the events read per load besides the time; the ratio of the two
// times is what snapshots buy, the events read what bounds it. A third
// account has its 30,000 events within the last 10 minutes: its snapshot
// holds all 15,000 outcomes (none is old enough to forget), the largest a
// snapshot of that history gets.
func BenchmarkColdLoad(b *testing.B) {
	const n = 30_000
	cfg := testConfig()
	cfg.Log.Level = "warn"
	d := start(b, cfg, 1)
	bare, snap, recent := acctOf("bench-bare"), acctOf("bench-snapshot"), acctOf("bench-recent")
	d.history(bare, n, 30*24*time.Hour)
	d.history(snap, n, 30*24*time.Hour)
	d.history(recent, n, 10*time.Minute)
	for _, acct := range []string{snap, recent} {
		d.view(acct) // loads it whole, then appends a snapshot
		natstest.Eventually(b, time.Minute, "the snapshot", func() bool {
			evs := d.events(acct)
			return evs[len(evs)-1].Type == ledger.TypeSnapshot
		})
	}
	for _, tc := range []struct{ name, acct string }{
		{"from-the-first-event", bare}, {"from-the-snapshot", snap}, {"from-a-snapshot-of-recent-outcomes", recent},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var read float64
			for b.Loop() {
				b.StopTimer()
				nc, _ := natstest.Connect(b, d.node.URL())
				reg := prometheus.NewRegistry()
				cfg := d.cfg
				cfg.Quota.SnapshotEvery = 1 << 30 // this replica writes none
				svc, err := quota.New(context.Background(), cfg, nc, reg)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				b.StartTimer()
				if _, err := svc.View(ctx, tc.acct); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cancel()
				read += gathered(b, reg, "sdevents_quota_account_load_events_total")
				nc.Close()
				b.StartTimer()
			}
			b.ReportMetric(read/float64(b.N), "events-read/op")
		})
	}
}

// gathered is the value of the counter name in reg.
func gathered(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
