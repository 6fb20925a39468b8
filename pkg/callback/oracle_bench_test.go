package callback_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
)

// oracleRequests returns n requests with tokens whose padding holds and n with
// tokens whose padding does not, all under a junk sign: what a padding-oracle
// attacker sends, the first kind answered "signature mismatch", the second
// "undecryptable apiToken".
func oracleRequests(tb testing.TB, key callback.Key, n int) (good, bad []callback.Params) {
	tb.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	random := func(k int) []byte {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	for len(good) < n || len(bad) < n {
		token := strings.Repeat("t", 1+r.IntN(40))
		enc, err := callback.EncryptToken(token, key.SK, bytes.NewReader(random(16)))
		if err != nil {
			tb.Fatal(err)
		}
		p := callback.Params{APIID: "api-txt2img", BizType: callback.BizTaskFinished, InvokeID: "i-" + strconv.Itoa(len(good)),
			APIToken: enc, Sign: base64.StdEncoding.EncodeToString(random(32)), Nonce: "n",
			Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
		raw, _ := base64.StdEncoding.DecodeString(enc)
		raw[len(raw)-17] ^= byte(1 + r.IntN(255))
		q := p
		q.APIToken = base64.StdEncoding.EncodeToString(raw)
		if _, err := callback.DecryptToken(q.APIToken, key.SK); !errors.Is(err, callback.ErrToken) || !strings.Contains(err.Error(), "padding") {
			continue
		}
		good, bad = append(good, p), append(bad, q)
	}
	return good, bad
}

// BenchmarkVerifyPaddingOracle times Verifier.Verify on tokens whose padding
// holds and on tokens whose padding does not, in alternating batches, and
// reports both and their ratio (bad/good): 1.0 means the time tells nothing.
func BenchmarkVerifyPaddingOracle(b *testing.B) {
	for _, keys := range []int{1, 2} {
		b.Run(strconv.Itoa(keys)+"-keys", func(b *testing.B) {
			key := callback.Key{AK: "AK-bench", SK: "SK-bench"}
			ks := []callback.Key{{AK: "AK-old", SK: "SK-old"}, key}[2-keys:]
			v := callback.NewVerifier(ks)
			const batch = 256
			good, bad := oracleRequests(b, key, batch)
			body := []byte(`{"success":true,"data":{"generatedImageId":"g-1","url":"https://example.com/1.png","type":"png","width":"512","height":512}}`)
			run := func(ps []callback.Params) time.Duration {
				start := time.Now()
				for _, p := range ps {
					if _, err := v.Verify(p, body); err == nil {
						b.Fatal("a junk sign verified")
					}
				}
				return time.Since(start)
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
			b.ReportMetric(float64(tGood.Nanoseconds())/n, "good-ns/verify")
			b.ReportMetric(float64(tBad.Nanoseconds())/n, "bad-ns/verify")
			b.ReportMetric(float64(tBad)/float64(tGood), "bad/good")
		})
	}
}
