package ingress_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/ingress"
)

// rawAnswer is an HTTP answer as the client sees it, minus Date.
type rawAnswer struct {
	Status      int
	ContentType string
	Length      string
	Body        string
}

// postRaw POSTs body to path with rawQuery as given and returns the answer.
func (h *harness) postRaw(path, rawQuery string, body []byte) rawAnswer {
	h.t.Helper()
	return postRawAt(h.t, h.base, path, rawQuery, body)
}

// postRawAt POSTs body to base + path with rawQuery as given and returns the
// answer.
func postRawAt(t testing.TB, base, path, rawQuery string, body []byte) rawAnswer {
	t.Helper()
	resp, err := http.Post(base+path+"?"+rawQuery, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawAnswer{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Length"), string(raw)}
}

// randomToken returns a token of 1 to 40 printable characters.
func randomToken(r *rand.Rand) string {
	b := make([]byte, 1+r.IntN(40))
	for i := range b {
		b[i] = byte(' ' + r.IntN(95))
	}
	return string(b)
}

// encrypt is callback.EncryptToken with its IV from r.
func encrypt(t testing.TB, r *rand.Rand, token, sk string) string {
	t.Helper()
	iv := make([]byte, 16)
	for i := range iv {
		iv[i] = byte(r.Uint32())
	}
	enc, err := callback.EncryptToken(token, sk, bytes.NewReader(iv))
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// badPadding returns apiToken with the last byte of its next-to-last block
// (the IV for a one-block token) changed so that the plaintext's padding no
// longer holds: what a padding-oracle attacker sends.
func badPadding(t testing.TB, r *rand.Rand, apiToken, sk string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(apiToken)
	if err != nil {
		t.Fatal(err)
	}
	for {
		b := bytes.Clone(raw)
		b[len(b)-17] ^= byte(1 + r.IntN(255))
		enc := base64.StdEncoding.EncodeToString(b)
		if _, err := callback.DecryptToken(enc, sk); errors.Is(err, callback.ErrToken) && strings.Contains(err.Error(), "padding") {
			return enc
		}
	}
}

// junkSign is a well-formed sign (base64 of 32 bytes) that verifies nothing.
func junkSign(r *rand.Rand) string {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TestVerificationFailuresAnswerAlike: every callback that fails verification
// — a token whose padding is good or bad under a junk sign, a wrong key pair,
// a stale timestamp, a tampered body, a missing or malformed sign — gets the
// same answer, byte for byte, so that the answer is no padding oracle.
func TestVerificationFailuresAnswerAlike(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	r := rand.New(rand.NewPCG(1, 2))
	body := []byte(`{"success":true}`)
	query := func(apiToken, sign string, ts time.Time) string {
		return url.Values{"apiId": {"api-1"}, "bizType": {callback.BizTaskFinished}, "invokeId": {"i-oracle"},
			"apiToken": {apiToken}, "sign": {sign}, "nonce": {"n"},
			"timestamp": {strconv.FormatInt(ts.UnixMilli(), 10)}}.Encode()
	}
	type attempt struct {
		name, path, query string
		body              []byte
	}
	var attempts []attempt
	for range 24 {
		good := encrypt(t, r, randomToken(r), testKey.SK)
		attempts = append(attempts,
			attempt{"good padding, junk sign", "", query(good, junkSign(r), h.clock()), body},
			attempt{"bad padding, junk sign", "", query(badPadding(t, r, good, testKey.SK), junkSign(r), h.clock()), body})
	}
	signed := call{bizType: callback.BizTaskFinished, invokeID: "i-oracle", token: "user-oracle", body: body}
	stale := signed
	stale.ts = h.clock().Add(-7 * time.Hour)
	missing := signed.withTS(t, h.clock())
	missing.Del("sign")
	malformed := signed.withTS(t, h.clock())
	malformed.Set("sign", "not base64")
	notBase64 := signed.withTS(t, h.clock())
	notBase64.Set("apiToken", "%%%")
	attempts = append(attempts,
		attempt{"other source's key pair", "/v1/callbacks/other", signed.withTS(t, h.clock()).Encode(), body},
		attempt{"stale timestamp", "", stale.withTS(t, stale.ts).Encode(), body},
		attempt{"tampered body", "", signed.withTS(t, h.clock()).Encode(), []byte(`{"success":false}`)},
		attempt{"missing sign", "", missing.Encode(), body},
		attempt{"sign not base64", "", malformed.Encode(), body},
		attempt{"token not base64", "", notBase64.Encode(), body},
	)
	var first rawAnswer
	for i, a := range attempts {
		path := a.path
		if path == "" {
			path = "/v1/callbacks/default"
		}
		got := h.postRaw(path, a.query, a.body)
		if i == 0 {
			first = got
			if got.Status != http.StatusUnauthorized {
				t.Fatalf("%s: status %d, want 401", a.name, got.Status)
			}
			continue
		}
		if got != first {
			t.Errorf("%s: answer %+v differs from %+v", a.name, got, first)
		}
	}
	if n := h.count(">"); n != 0 {
		t.Fatalf("refused callbacks stored %d messages", n)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "padding") || !strings.Contains(logs, "signature mismatch") || !strings.Contains(logs, `"outcome":"unverified"`) {
		t.Fatal("the log does not tell the causes apart")
	}
}

// TestOversizedBizTypeRefused: a signed callback whose bizType would make a
// subject longer than the NATS control line (which makes the server close the
// connection for good) is refused 400 before anything is published; the
// connection stays open and the next callback is stored.
func TestOversizedBizTypeRefused(t *testing.T) {
	t.Parallel()
	h := startHarness(t, roomyConfig())
	for _, n := range []int{callback.MaxBizTypeLen + 1, 4080} {
		c := call{bizType: strings.Repeat("b", n), invokeID: "i-long", token: "user-long", body: []byte(`{}`)}
		if code, ans := h.send(c); code != http.StatusBadRequest {
			t.Fatalf("bizType of %d bytes: %d %v, want 400", n, code, ans)
		}
	}
	c := call{bizType: strings.Repeat("b", callback.MaxBizTypeLen), invokeID: "i-long", token: "user-long", body: []byte(`{}`)}
	if code, ans := h.send(c); code != http.StatusOK {
		t.Fatalf("bizType of %d bytes: %d %v, want 200", callback.MaxBizTypeLen, code, ans)
	}
	c = call{bizType: callback.BizTaskFinished, invokeID: "i-after", token: "user-long", body: []byte(`{}`)}
	if code, ans := h.send(c); code != http.StatusOK {
		t.Fatalf("the next callback: %d %v, want 200", code, ans)
	}
	if n := h.count(">"); n != 2 {
		t.Fatalf("stored %d messages, want 2", n)
	}
	if h.nc.IsClosed() || !h.nc.IsConnected() {
		t.Fatal("the NATS connection did not survive")
	}
}

// countingBody is an endless request body that counts the bytes read.
type countingBody struct{ n int }

func (b *countingBody) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	b.n += len(p)
	return len(p), nil
}

// TestQueryCheckedBeforeBody: a callback whose query already decides its
// refusal — malformed, unsigned, a sign that cannot be one, stale, an
// oversized bizType — is answered without reading a byte of its body.
func TestQueryCheckedBeforeBody(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	c := call{bizType: callback.BizTaskFinished, invokeID: "i-body", token: "user-body", body: []byte(`{}`)}
	fresh := func() url.Values { return c.withTS(t, h.clock()) }
	tests := []struct {
		name  string
		query func() url.Values
		want  int
	}{
		{"repeated parameter", func() url.Values { q := fresh(); q.Add("nonce", "again"); return q }, http.StatusBadRequest},
		{"bizType over its bound", func() url.Values {
			q := fresh()
			q.Set("bizType", strings.Repeat("b", callback.MaxBizTypeLen+1))
			return q
		}, http.StatusBadRequest},
		{"missing sign", func() url.Values { q := fresh(); q.Del("sign"); return q }, http.StatusUnauthorized},
		{"sign of the wrong length", func() url.Values { q := fresh(); q.Set("sign", "c2lnbg=="); return q }, http.StatusUnauthorized},
		{"stale timestamp", func() url.Values { return c.withTS(t, h.clock().Add(-7*time.Hour)) }, http.StatusUnauthorized},
		{"timestamp ahead", func() url.Values { return c.withTS(t, h.clock().Add(time.Hour)) }, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingBody{}
			w := httptest.NewRecorder()
			h.handler.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/callbacks/default?"+tc.query().Encode(), body))
			if w.Code != tc.want {
				t.Fatalf("status %d (%s), want %d", w.Code, w.Body, tc.want)
			}
			if body.n != 0 {
				t.Fatalf("read %d bytes of the body", body.n)
			}
		})
	}
	if n := h.count(">"); n != 0 {
		t.Fatalf("stored %d messages", n)
	}
}

// shifted returns the variants of a captured query that keep its sign valid:
// characters moved across each boundary of the unseparated signed string
// between bizType, apiId and invokeId.
func shifted(q url.Values) []url.Values {
	fields := []string{"bizType", "apiId", "invokeId"}
	var out []url.Values
	for i := 0; i+1 < len(fields); i++ {
		a, b := q.Get(fields[i]), q.Get(fields[i+1])
		joined := a + b
		for cut := 1; cut < len(joined); cut++ {
			if cut == len(a) {
				continue
			}
			v := url.Values{}
			for k, vs := range q {
				v[k] = append([]string(nil), vs...)
			}
			v.Set(fields[i], joined[:cut])
			v.Set(fields[i+1], joined[cut:])
			out = append(out, v)
		}
	}
	return out
}

// TestShiftedReplayRefused: a captured callback replayed with characters
// moved between bizType, apiId and invokeId (the sign stays valid: the signed
// string has no separators) is refused with the answer of any verification
// failure and stores nothing, at the replica that first accepted it, at
// another replica, and at a replica started afterwards; a byte-identical
// repeat is answered as the first and stores nothing more.
func TestShiftedReplayRefused(t *testing.T) {
	t.Parallel()
	for _, replicas := range []int{1, 2} {
		t.Run(strconv.Itoa(replicas)+" replicas", func(t *testing.T) {
			t.Parallel()
			h := startHarness(t, roomyConfig())
			fronts := []string{h.base}
			if replicas == 2 {
				_, js := natstest.Connect(t, h.node.URL())
				fronts = append(fronts, serveIngress(t, roomyConfig(), js, io.Discard, ingress.WithClock(h.clock)).base)
			}
			refusal := h.postRaw("/v1/callbacks/default", "sign=x&nonce=n&timestamp=1", nil)
			var last url.Values
			body := []byte(`{"batch_size":2,"n_iter":1}`)
			for _, biz := range []string{callback.BizTaskFinished, callback.BizAPIPreInvoke} {
				c := call{bizType: biz, invokeID: "inv-123456", token: "user-replay", key: testKey, ts: h.clock(), body: body}
				captured := c.query(t)
				last = captured
				first := postRawAt(t, fronts[0], "/v1/callbacks/default", captured.Encode(), c.body)
				if first.Status != http.StatusOK {
					t.Fatalf("%s: the original: %+v", biz, first)
				}
				variants := shifted(captured)
				for i, v := range variants {
					if got := postRawAt(t, fronts[i%len(fronts)], "/v1/callbacks/default", v.Encode(), c.body); got != refusal {
						t.Fatalf("%s: variant apiId=%q invokeId=%q bizType=%q: %+v, want %+v", biz, v.Get("apiId"), v.Get("invokeId"), v.Get("bizType"), got, refusal)
					}
				}
				if got := postRawAt(t, fronts[len(fronts)-1], "/v1/callbacks/default", captured.Encode(), c.body); got != first {
					t.Fatalf("%s: the byte-identical repeat: %+v, want %+v", biz, got, first)
				}
				t.Logf("%s: %d shifted variants refused", biz, len(variants))
			}
			_, js := natstest.Connect(t, h.node.URL())
			restarted := serveIngress(t, roomyConfig(), js, io.Discard, ingress.WithClock(h.clock))
			if got := postRawAt(t, restarted.base, "/v1/callbacks/default", shifted(last)[0].Encode(), body); got != refusal {
				t.Fatalf("a replica started afterwards: %+v, want %+v", got, refusal)
			}
			if !strings.Contains(h.logs.String(), `"outcome":"replayed"`) {
				t.Fatal("no replay in the log")
			}
			if n := h.count(">"); n != 2 {
				t.Fatalf("stored %d events, want 2:\n%s", n, h.allMessages())
			}
		})
	}
}
