package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/callback/callbacktest"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/services/ingress"
)

// TestVectorsOverHTTP sends every case of the seed-checked vectors through the
// real ingress: valid ones are stored with the expected account id, invalid
// ones are answered 401 and store nothing. The log and every stored message
// are then searched for the plaintext tokens.
func TestVectorsOverHTTP(t *testing.T) {
	t.Parallel()
	vectors := callbacktest.Vectors(t)
	var keys []callback.Key
	seen := map[callback.Key]bool{}
	for _, v := range vectors {
		k := callback.Key{AK: v.AK, SK: v.SK}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if len(keys) < 2 {
		t.Fatal("vectors should exercise key rotation")
	}
	// One source per key pair, and one holding every pair (rotation).
	cfg := baseConfig()
	cfg.Callbacks = nil
	sourceOf := map[callback.Key]string{}
	rotation := ingress.CallbackSource{Name: "rotation"}
	for i, k := range keys {
		name := "k" + strconv.Itoa(i)
		sourceOf[k] = name
		cfg.Callbacks = append(cfg.Callbacks, ingress.CallbackSource{Name: name, Keys: []callback.Key{k}})
		rotation.Keys = append(rotation.Keys, k)
	}
	cfg.Callbacks = append(cfg.Callbacks, rotation)
	h := startHarness(t, cfg)
	var tokens []string
	for _, v := range vectors {
		if v.Token != "" {
			tokens = append(tokens, v.Token)
		}
		t.Run(v.Name, func(t *testing.T) {
			ts, err := callback.ParseTimestamp(v.Query["timestamp"])
			if err != nil {
				t.Fatal(err)
			}
			h.setNow(ts.Add(time.Second))
			q := url.Values{}
			for k, s := range v.Query {
				q.Set(k, s)
			}
			source := sourceOf[callback.Key{AK: v.AK, SK: v.SK}]
			if v.Name == "rotated-key" {
				source = "rotation"
			}
			subject := "sd.callback." + source + "." + callback.SubjectToken(v.Query["bizType"])
			before := h.count(subject)
			code, ans := h.post("/v1/callbacks/"+source, q, []byte(v.Body))
			after := h.count(subject)
			if !v.Valid {
				if code != http.StatusUnauthorized {
					t.Fatalf("code = %d (%v), want 401", code, ans)
				}
				if after != before {
					t.Fatalf("an invalid request stored %d messages", after-before)
				}
				return
			}
			if code != http.StatusOK {
				t.Fatalf("code = %d (%v), want 200", code, ans)
			}
			if after != before+1 {
				t.Fatalf("stored %d messages, want 1", after-before)
			}
			m := h.last(subject)
			if got := m.Header.Get("sd-account"); got != v.Account {
				t.Fatalf("sd-account = %q, want %q", got, v.Account)
			}
			if got := m.Header.Get("ce-subject"); got != v.Account {
				t.Fatalf("ce-subject = %q, want %q", got, v.Account)
			}
			if string(m.Data) != v.Body {
				t.Fatalf("data is not the body byte for byte")
			}
			if m.Header.Get("sd-api-token") != v.Query["apiToken"] {
				t.Fatalf("sd-api-token is not the encrypted token as received")
			}
			for _, k := range []string{"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "Nats-Msg-Id", "sd-source", "sd-sign", "sd-nonce", "sd-timestamp", "sd-biz-type", "sd-invoke-id", "sd-api-id"} {
				if _, ok := m.Header[k]; !ok {
					t.Errorf("header %s missing", k)
				}
			}
			if m.Header.Get("ce-id") != m.Header.Get("Nats-Msg-Id") {
				t.Error("Nats-Msg-Id differs from ce-id")
			}
		})
	}
	stored := h.allMessages()
	logs := h.logs.String()
	if !strings.Contains(logs, `"message":"request"`) {
		t.Fatal("no request log lines captured")
	}
	for _, tok := range tokens {
		if strings.Contains(logs, tok) {
			t.Errorf("log holds a plaintext token")
		}
		if strings.Contains(stored, tok) {
			t.Errorf("a stored message holds a plaintext token")
		}
	}
}

func TestRedeliveryStoredOnce(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	c := call{bizType: callback.BizTaskFinished, invokeID: "i-redeliver", token: "user-1",
		body: []byte(`{"success":true,"data":{"generatedImageId":"g","url":"https://example.com/a.png"}}`)}
	subject := "sd.callback.default.sdTaskFinished"
	for i := range 3 {
		c.nonce = "n" + string(rune('a'+i)) // fresh nonce, timestamp and sign every retry
		h.setNow(h.clock().Add(10 * time.Second))
		if code, ans := h.send(c); code != http.StatusOK {
			t.Fatalf("retry %d: %d %v", i, code, ans)
		}
	}
	if n := h.count(subject); n != 1 {
		t.Fatalf("stored %d times, want 1", n)
	}
	// A different body under the same invokeId is another event.
	c.body = []byte(`{"success":false}`)
	if code, _ := h.send(c); code != http.StatusOK {
		t.Fatal(code)
	}
	if n := h.count(subject); n != 2 {
		t.Fatalf("stored %d, want 2", n)
	}
}

// TestRedeliveryBeyondDuplicateWindow shrinks the stream's duplicate window so
// that only the long-horizon index can recognise a late retry.
func TestRedeliveryBeyondDuplicateWindow(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	ctx := context.Background()
	s, err := h.js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Duplicates = 100 * time.Millisecond
	if _, err := h.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	c := call{bizType: callback.BizJobFinished, invokeID: "i-late", token: "user-2", body: []byte(`{"success":true,"data":[]}`)}
	if code, _ := h.send(c); code != http.StatusOK {
		t.Fatal(code)
	}
	first := time.Now()
	natstest.Eventually(t, 5*time.Second, "duplicate window to pass", func() bool { return time.Since(first) > 500*time.Millisecond })
	c.nonce = "later"
	h.setNow(h.clock().Add(2 * time.Hour))
	if code, _ := h.send(c); code != http.StatusOK {
		t.Fatal(code)
	}
	if n := h.count("sd.callback.default.sdJobFinished"); n != 1 {
		t.Fatalf("stored %d times, want 1", n)
	}
}

func TestUnavailableThenRetryStored(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	c := call{bizType: callback.BizTaskFinished, invokeID: "i-outage", token: "user-3", body: []byte(`{"success":true}`)}
	h.node.Shutdown()
	code, ans := h.send(c)
	if code != http.StatusServiceUnavailable || ans["success"] != false {
		t.Fatalf("with JetStream down: %d %v, want 503", code, ans)
	}
	h.node.Restart()
	natstest.Eventually(t, 10*time.Second, "reconnect", h.nc.IsConnected)
	c.nonce = "retry"
	h.setNow(h.clock().Add(10 * time.Second))
	var got int
	natstest.Eventually(t, 10*time.Second, "retry accepted", func() bool {
		got, _ = h.send(c)
		return got == http.StatusOK
	})
	if n := h.count("sd.callback.default.sdTaskFinished"); n != 1 {
		t.Fatalf("stored %d, want 1", n)
	}
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	good := call{bizType: callback.BizTaskFinished, invokeID: "i-e", token: "user-4", body: []byte(`{}`)}
	tests := []struct {
		name   string
		mutate func(q url.Values) (path string, body []byte)
		want   int
	}{
		{"unknown source", func(q url.Values) (string, []byte) { return "/v1/callbacks/nope", good.body }, 404},
		{"missing sign", func(q url.Values) (string, []byte) { q.Del("sign"); return "", good.body }, 401},
		{"repeated parameter", func(q url.Values) (string, []byte) { q.Add("invokeId", "x"); return "", good.body }, 400},
		{"timestamp not a number", func(q url.Values) (string, []byte) { q.Set("timestamp", "soon"); return "", good.body }, 400},
		{"control character", func(q url.Values) (string, []byte) { q.Set("nonce", "a\nb"); return "", good.body }, 400},
		{"mutated body", func(q url.Values) (string, []byte) { return "", []byte(`{"x":1}`) }, 401},
		{"other source's path", func(q url.Values) (string, []byte) { return "/v1/callbacks/other", good.body }, 401},
		{"undecryptable token", func(q url.Values) (string, []byte) { q.Set("apiToken", "AAAA"); return "", good.body }, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := good.withTS(t, h.clock())
			path, body := tc.mutate(q)
			if path == "" {
				path = "/v1/callbacks/default"
			}
			if code, ans := h.post(path, q, body); code != tc.want {
				t.Fatalf("code = %d (%v), want %d", code, ans, tc.want)
			}
		})
	}
	if n := h.count(">"); n != 0 {
		t.Fatalf("bad requests stored %d messages", n)
	}
}

func (c call) withTS(t testing.TB, ts time.Time) url.Values {
	c.ts = ts
	if c.key == (callback.Key{}) {
		c.key = testKey
	}
	return c.query(t)
}

func TestFreshness(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	now := h.clock()
	tests := []struct {
		name    string
		bizType string
		ts      time.Time
		seconds bool
		want    int
	}{
		{"async 5h old", callback.BizTaskFinished, now.Add(-5 * time.Hour), false, 200},
		{"async 7h old", callback.BizTaskFinished, now.Add(-7 * time.Hour), false, 401},
		{"async in seconds", callback.BizJobFinished, now.Add(-time.Minute), true, 200},
		{"async 10 min ahead", callback.BizTaskFinished, now.Add(10 * time.Minute), false, 401},
		{"sync 4 min old", callback.BizSDPreInvoke, now.Add(-4 * time.Minute), false, 200},
		{"sync 6 min old", callback.BizSDPreInvoke, now.Add(-6 * time.Minute), false, 401},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := call{bizType: tc.bizType, invokeID: "i-f" + string(rune('a'+i)), token: "u", body: []byte(`{}`), ts: tc.ts, key: testKey}
			q := c.query(t)
			if tc.seconds {
				// Re-sign with a seconds timestamp.
				q = secondsQuery(t, c)
			}
			if code, ans := h.post("/v1/callbacks/default", q, c.body); code != tc.want {
				t.Fatalf("code = %d (%v), want %d", code, ans, tc.want)
			}
		})
	}
}

func secondsQuery(t *testing.T, c call) url.Values {
	t.Helper()
	enc, err := callback.EncryptToken(c.token, c.key.SK, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := callback.Params{APIID: "api-1", BizType: c.bizType, InvokeID: c.invokeID, APIToken: enc, Nonce: "s",
		Timestamp: strconv.FormatInt(c.ts.Unix(), 10)}
	p.Sign = callback.Sign(c.key, p, c.body, c.token)
	return url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
		"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	exact := bytes.Repeat([]byte("a"), 1<<20)
	c := call{bizType: callback.BizTaskFinished, invokeID: "i-big", token: "u", body: exact}
	if code, ans := h.send(c); code != http.StatusOK {
		t.Fatalf("exactly 1 MiB: %d %v", code, ans)
	}
	c.body = append(exact, 'b')
	if code, _ := h.send(c); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("1 MiB + 1: %d, want 413", code)
	}
}

// TestSyncDelegatesToQuota proves the request/reply path with a test responder.
func TestSyncDelegatesToQuota(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	var got atomic.Value
	sub, err := h.nc.QueueSubscribe(quotarpc.SubjectDecide, quotarpc.QueueGroup, func(m *nats.Msg) {
		var req quotarpc.DecideRequest
		_ = json.Unmarshal(m.Data, &req)
		got.Store(req)
		b, _ := json.Marshal(quotarpc.Answer{Success: false, ErrMessage: "Not enough credits: 0 left, 6 needed."})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	body := []byte(`{"batch_size":2,"n_iter":3}`)
	code, ans := h.send(call{bizType: callback.BizAPIPreInvoke, invokeID: "i-sync", token: "user-9", body: body})
	if code != 200 || ans["success"] != false || !strings.Contains(ans["errMessage"].(string), "Not enough credits") {
		t.Fatalf("answer %d %v", code, ans)
	}
	req := got.Load().(quotarpc.DecideRequest)
	if req.InvokeID != "i-sync" || req.BizType != callback.BizAPIPreInvoke || req.Account == "" || req.IngressSeq == 0 || !bytes.Equal(req.BodyBytes(), body) {
		t.Fatalf("request %+v", req)
	}
	if n := h.count("sd.callback.default.apiAccessPreInvoke"); n != 1 {
		t.Fatalf("sync event stored %d times", n)
	}
}

// TestChecksAskedWhileStoring: the two checks, which change nothing, are
// asked of the quota while their event is being stored, so a check whose
// event cannot be stored (INGRESS gone) is answered 503 with the quota asked
// all the same; a reservation, commit or rollback is asked only once its
// event is stored, so one answered 503 never reached the quota.
func TestChecksAskedWhileStoring(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	var asked sync.Map // bizType → true
	sub, err := h.nc.QueueSubscribe(quotarpc.SubjectDecide, quotarpc.QueueGroup, func(m *nats.Msg) {
		var req quotarpc.DecideRequest
		_ = json.Unmarshal(m.Data, &req)
		asked.Store(req.BizType, true)
		_ = m.Respond([]byte(`{"success":true,"data":{"message":"ok","disabled":false}}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.js.DeleteStream(ctx, contract.StreamIngress); err != nil {
		t.Fatal(err)
	}
	for _, biz := range []string{callback.BizSDPreInvoke, callback.BizImgGenControlConfig,
		callback.BizAPIPreInvoke, callback.BizAPICommit, callback.BizAPIRollback} {
		if code, ans := h.send(call{bizType: biz, invokeID: "i-" + biz, token: "u", body: []byte(`{}`)}); code != http.StatusServiceUnavailable {
			t.Fatalf("%s without INGRESS: %d %v", biz, code, ans)
		}
	}
	for _, biz := range []string{callback.BizSDPreInvoke, callback.BizImgGenControlConfig} {
		natstest.Eventually(t, 10*time.Second, biz+" asked", func() bool { _, ok := asked.Load(biz); return ok })
	}
	for _, biz := range []string{callback.BizAPIPreInvoke, callback.BizAPICommit, callback.BizAPIRollback} {
		if _, ok := asked.Load(biz); ok {
			t.Errorf("%s answered 503 reached the quota", biz)
		}
	}
}

func TestSyncWithoutQuotaIsRefusedInTime(t *testing.T) {
	t.Parallel()
	for _, failOpen := range []bool{false, true} {
		// The deadline leaves room for the claim and the store on a loaded
		// machine; the responder is far slower than it.
		cfg := roomyConfig()
		cfg.SyncDeadline = time.Second
		cfg.FailOpen = failOpen
		h := startHarness(t, cfg)
		sub, err := h.nc.Subscribe(quotarpc.SubjectDecide, func(m *nats.Msg) {
			time.Sleep(4 * time.Second)
			_ = m.Respond([]byte(`{"success":true}`))
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		for _, biz := range []string{callback.BizAPIPreInvoke, callback.BizImgGenControlConfig} {
			start := time.Now()
			code, ans := h.send(call{bizType: biz, invokeID: "i-slow-" + biz, token: "u", body: []byte(`{}`)})
			took := time.Since(start)
			if code != 200 || ans["success"] != failOpen {
				t.Fatalf("fail_open=%v %s: %d %v", failOpen, biz, code, ans)
			}
			if took > 3*time.Second {
				t.Fatalf("answer took %v, beyond the deadline", took)
			}
			if biz == callback.BizImgGenControlConfig {
				data := ans["data"].(map[string]any)
				if data["disabled"] != !failOpen {
					t.Fatalf("disabled = %v", data["disabled"])
				}
			}
		}
	}
}

func TestFirstSourceRoute(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	c := call{bizType: callback.BizTaskFinished, invokeID: "i-first", token: "u", body: []byte(`{}`), key: testKey, ts: h.clock()}
	if code, _ := h.post("/v1/callbacks", c.query(t), c.body); code != 200 {
		t.Fatal(code)
	}
	if n := h.count("sd.callback.default.sdTaskFinished"); n != 1 {
		t.Fatal(n)
	}
}

func TestUnknownBizTypeStored(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig())
	if code, ans := h.send(call{bizType: "sd.New Event", invokeID: "i-u", token: "u", body: []byte(`{}`)}); code != 200 || ans["success"] != true {
		t.Fatal(code, ans)
	}
	m := h.last("sd.callback.default.sd_New_Event")
	if m.Header.Get("sd-biz-type") != "sd.New%20Event" {
		t.Fatalf("sd-biz-type = %q", m.Header.Get("sd-biz-type"))
	}
}
