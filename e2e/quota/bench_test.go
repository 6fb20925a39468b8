package quota_test

import (
	"bytes"
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

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/services/quota/quotatest"
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
	cfg := quotatest.Config()
	d := start(b, cfg, 1)
	tokens := make([]string, accounts)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("bench-user-%d", i)
		d.Grant(tokens[i], 1_000_000_000, "bench")
	}
	// Requests are signed up front so that signing is not measured.
	type request struct{ url string }
	body := []byte(`{"batch_size":1,"n_iter":1}`)
	reqs := make([]request, b.N)
	for i := range reqs {
		token := tokens[i%accounts]
		enc, err := callback.EncryptToken(token, quotatest.Key.SK, nil)
		if err != nil {
			b.Fatal(err)
		}
		p := callback.Params{APIID: "api-1", BizType: callback.BizAPIPreInvoke, InvokeID: fmt.Sprintf("b-%d-%d", time.Now().UnixNano(), i),
			APIToken: enc, Nonce: strconv.Itoa(i), Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
		p.Sign = callback.Sign(quotatest.Key, p, body, token)
		q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
			"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
		reqs[i] = request{d.Base + "/v1/callbacks/default?" + q.Encode()}
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
