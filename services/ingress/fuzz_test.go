package ingress_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// Fuzz modes, bits of FuzzCallbackHTTP's first argument.
const (
	fuzzSign         = 1 << iota // sign with the source's real key pair, so that verification passes
	fuzzEncrypt                  // encrypt token as the platform does (else it is sent as apiToken as is)
	fuzzSeconds                  // timestamp in seconds (else milliseconds)
	fuzzEscapeAll                // percent-encode every byte of every value, in lower-case hex
	fuzzRepeat                   // give invokeId twice
	fuzzFirstSource              // POST /v1/callbacks (the first source) instead of /v1/callbacks/<source>
	fuzzExtraQuery               // append extra to the query as is
	fuzzRawTimestamp             // send extra as the timestamp (signed as such)
)

// FuzzCallbackHTTP sends random callbacks through the real ingress over HTTP
// on loopback — random values, lengths and encodings of every query
// parameter, random bodies, signed with the source's real key pair or not —
// and asserts what must hold whatever arrives: no 5xx while JetStream is up,
// nothing stored without a 2xx, and the ingress's NATS connection still open.
// A stand-in quota service answers synchronous callbacks at once (the real
// one lives in another module; its decisions are not under test here).
func FuzzCallbackHTTP(f *testing.F) {
	f.Add(uint8(fuzzSign|fuzzEncrypt), "default", "api-txt2img", callback.BizTaskFinished, "inv-1", "user-1", "n1", int64(0),
		[]byte(`{"success":true,"data":{"generatedImageId":"g","url":"https://example.com/a.png"}}`), "")
	f.Add(uint8(fuzzSign|fuzzEncrypt|fuzzSeconds), "default", "api", callback.BizAPIPreInvoke, "inv-2", "user-2", "n2", int64(-60_000),
		[]byte(`{"batch_size":2,"n_iter":1}`), "")
	f.Add(uint8(fuzzSign|fuzzEncrypt|fuzzEscapeAll), "default", "a p+i/é", "sd New.Event*>", "i nv%2B", "ü", "n o", int64(1000), []byte("\x00\xff"), "")
	f.Add(uint8(fuzzSign|fuzzEncrypt), "default", "api", strings.Repeat("b", 129), "inv-3", "user-3", "n3", int64(0), []byte(`{}`), "")
	f.Add(uint8(fuzzSign|fuzzEncrypt), "default", "api", strings.Repeat("b", 4080), "inv-3", "user-3", "n3", int64(0), []byte(`{}`), "")
	f.Add(uint8(fuzzSign), "default", "", "", "", "", "n4", int64(0), []byte(``), "")
	f.Add(uint8(fuzzSign|fuzzEncrypt), "other", "api", callback.BizTaskFinished, "inv-5", "user-5", "n5", int64(0), []byte(`{}`), "")
	f.Add(uint8(fuzzEncrypt|fuzzRepeat), "default", "api", callback.BizJobFinished, "inv-6", "user-6", "n6", int64(0), []byte(`{}`), "")
	f.Add(uint8(fuzzSign|fuzzEncrypt|fuzzExtraQuery), "default", "api", callback.BizTaskFinished, "inv-7", "user-7", "n7", int64(0), []byte(`{}`), "&sign=again;%zz")
	f.Add(uint8(fuzzSign|fuzzEncrypt|fuzzRawTimestamp), "default", "api", callback.BizTaskFinished, "inv-8", "user-8", "n8", int64(0), []byte(`{}`), "+17")
	f.Add(uint8(fuzzSign|fuzzEncrypt|fuzzFirstSource), "nowhere", "api", callback.BizSDPreInvoke, "inv-9", "user-9", "n9", int64(-7*3600_000), []byte(`{}`), "")
	f.Add(uint8(0), "default", "api", callback.BizTaskFinished, "inv-10", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "n10", int64(0), []byte(`{}`), "")

	cfg := roomyConfig()
	cfg.SyncDeadline = 10 * time.Second
	h := startHarness(f, cfg)
	for _, subject := range []string{quotarpc.SubjectDecide, quotarpc.SubjectAbandon} {
		sub, err := h.nc.QueueSubscribe(subject, quotarpc.QueueGroup, func(m *nats.Msg) {
			_ = m.Respond([]byte(`{"success":true}`))
		})
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	f.Cleanup(func() {
		if h.nc.IsClosed() {
			f.Error("the ingress's NATS connection was closed")
		}
	})
	client := &http.Client{Timeout: 30 * time.Second}

	f.Fuzz(func(t *testing.T, mode uint8, source, apiID, bizType, invokeID, token, nonce string, tsOffset int64, body []byte, extra string) {
		const window = 8 * time.Hour
		ts := h.clock().Add(time.Duration(tsOffset%window.Milliseconds()) * time.Millisecond)
		p := callback.Params{APIID: apiID, BizType: bizType, InvokeID: invokeID, APIToken: token, Nonce: nonce,
			Timestamp: strconv.FormatInt(ts.UnixMilli(), 10)}
		if mode&fuzzSeconds != 0 {
			p.Timestamp = strconv.FormatInt(ts.Unix(), 10)
		}
		if mode&fuzzRawTimestamp != 0 {
			p.Timestamp = extra
		}
		plain := ""
		if mode&fuzzEncrypt != 0 && token != "" {
			enc, err := callback.EncryptToken(token, testKey.SK, bytes.NewReader(make([]byte, 16)))
			if err != nil {
				t.Fatal(err)
			}
			p.APIToken, plain = enc, token
		}
		if mode&fuzzSign != 0 {
			p.Sign = callback.Sign(testKey, p, body, plain)
		}
		query := fuzzQuery(p, mode&fuzzEscapeAll != 0)
		if mode&fuzzRepeat != 0 {
			query += "&invokeId=" + url.QueryEscape(invokeID)
		}
		if mode&fuzzExtraQuery != 0 {
			query += requestTarget(extra)
		}
		path := "/v1/callbacks/" + url.PathEscape(source)
		if mode&fuzzFirstSource != 0 {
			path = "/v1/callbacks"
		}

		before := countMessages(t, h.js, ">")
		resp, err := client.Post(h.base+path+"?"+query, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		t.Logf("answer %d %s", resp.StatusCode, bytes.TrimSpace(raw))
		if resp.StatusCode >= 500 {
			t.Fatalf("answer %d %s with JetStream up", resp.StatusCode, raw)
		}
		var ans struct {
			Success *bool `json:"success"`
		}
		if err := json.Unmarshal(raw, &ans); err != nil || ans.Success == nil {
			t.Fatalf("answer %d is not the seed's JSON: %q", resp.StatusCode, raw)
		}
		after := countMessages(t, h.js, ">")
		switch ok := resp.StatusCode >= 200 && resp.StatusCode < 300; {
		case !ok && after != before:
			t.Fatalf("answer %d %s, yet %d events stored", resp.StatusCode, raw, after-before)
		case after > before+1:
			t.Fatalf("one request stored %d events", after-before)
		case !ok && *ans.Success:
			t.Fatalf("answer %d with success true", resp.StatusCode)
		}
		if h.nc.IsClosed() {
			t.Fatal("the ingress's NATS connection was closed")
		}
	})
}

// fuzzQuery encodes p as a query: form-encoded, or with every byte of every
// value percent-encoded in lower-case hex (which decodes to the same values).
func fuzzQuery(p callback.Params, escapeAll bool) string {
	fields := []struct{ k, v string }{
		{"apiId", p.APIID}, {"bizType", p.BizType}, {"invokeId", p.InvokeID}, {"apiToken", p.APIToken},
		{"sign", p.Sign}, {"nonce", p.Nonce}, {"timestamp", p.Timestamp},
	}
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(f.k + "=")
		if !escapeAll {
			b.WriteString(url.QueryEscape(f.v))
			continue
		}
		for j := 0; j < len(f.v); j++ {
			fmt.Fprintf(&b, "%%%02x", f.v[j])
		}
	}
	return b.String()
}

// requestTarget percent-encodes the bytes of s that cannot appear in an HTTP
// request target (controls, space, '#', non-ASCII) and keeps the rest as is,
// bad escapes and separators included: the net/http server refuses such a
// request line itself, before any handler.
func requestTarget(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '#' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
