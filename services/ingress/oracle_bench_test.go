package ingress_test

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
)

// BenchmarkCallbackPaddingOracle times the whole callback handler (query,
// verification, the error answer and its log line; in-process, without the
// network's noise) on tokens whose padding holds and on tokens whose padding
// does not, under junk signs, in alternating batches. Reported: both times
// per request and their ratio (bad/good); 1.0 means the time tells nothing.
func BenchmarkCallbackPaddingOracle(b *testing.B) {
	h := startHarness(b, baseConfig())
	r := rand.New(rand.NewPCG(5, 6))
	body := []byte(`{"success":true,"data":{"generatedImageId":"g-1","url":"https://example.com/1.png","type":"png","width":"512","height":512}}`)
	const batch = 128
	var good, bad []string
	for i := range batch {
		enc := encrypt(b, r, randomToken(r), testKey.SK)
		q := url.Values{"apiId": {"api-txt2img"}, "bizType": {callback.BizTaskFinished}, "invokeId": {"i-" + strconv.Itoa(i)},
			"apiToken": {enc}, "sign": {junkSign(r)}, "nonce": {"n"},
			"timestamp": {strconv.FormatInt(time.Now().UnixMilli(), 10)}}
		good = append(good, "/v1/callbacks/default?"+q.Encode())
		q.Set("apiToken", badPadding(b, r, enc, testKey.SK))
		bad = append(bad, "/v1/callbacks/default?"+q.Encode())
	}
	run := func(targets []string) time.Duration {
		h.logs.Reset()
		w := httptest.NewRecorder()
		start := time.Now()
		for _, target := range targets {
			w.Body.Reset()
			h.handler.ServeHTTP(w, httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body)))
		}
		took := time.Since(start)
		if w.Code != http.StatusUnauthorized {
			b.Fatalf("status %d, want 401", w.Code)
		}
		return took
	}
	var tGood, tBad time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			tGood += run(good)
			tBad += run(bad)
		} else {
			tBad += run(bad)
			tGood += run(good)
		}
	}
	n := float64(b.N * batch)
	b.ReportMetric(float64(tGood.Nanoseconds())/n, "good-ns/req")
	b.ReportMetric(float64(tBad.Nanoseconds())/n, "bad-ns/req")
	b.ReportMetric(float64(tBad)/float64(tGood), "bad/good")
}
