package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// deploySingle is deployOn for one embedded JetStream node, streams at R1.
func deploySingle(t *testing.T) *deployment {
	t.Helper()
	n := natstest.Start(t)
	d := &deployment{t: t, urls: n.URL()}
	_, d.js = natstest.Connect(t, d.urls)
	natstest.ApplyStreams(t, d.js, 1)
	d.ingress, d.quota = platformIngress(), operatedQuota()
	d.ingress.PublishTimeout = 10 * time.Second // a loaded machine is not under test
	return d
}

// captured signs one callback, as a request an attacker could capture.
func captured(t *testing.T, bizType, apiID, invokeID, token string, body []byte) url.Values {
	t.Helper()
	enc, err := callback.EncryptToken(token, platformKey.SK, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := callback.Params{APIID: apiID, BizType: bizType, InvokeID: invokeID, APIToken: enc,
		Nonce: "n-" + invokeID, Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	p.Sign = callback.Sign(platformKey, p, body, token)
	return url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
		"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
}

// shiftedVariants returns q with characters moved across the apiId|invokeId
// boundary, both ways: the signed string, which joins the fields with no
// separator, is unchanged, and so is the sign.
func shiftedVariants(q url.Values) []url.Values {
	joined := q.Get("apiId") + q.Get("invokeId")
	var out []url.Values
	for cut := 0; cut <= len(joined); cut++ {
		if cut == len(q.Get("apiId")) {
			continue
		}
		v := url.Values{}
		for k, vs := range q {
			v[k] = append([]string(nil), vs...)
		}
		v.Set("apiId", joined[:cut])
		v.Set("invokeId", joined[cut:])
		out = append(out, v)
	}
	return out
}

// TestShiftedReplayActsOnce: a captured apiAccessPreInvoke and a captured
// sdTaskFinished, replayed with characters moved between apiId and invokeId
// (every shift keeps the sign valid), at one ingress replica and at two on
// one JetStream, with the quota service running: the credits are reserved
// once, each event is stored once, every shifted replay is refused 401, and
// a byte-identical repeat is answered as the original.
func TestShiftedReplayActsOnce(t *testing.T) {
	t.Parallel()
	d := deploySingle(t)
	q := d.startQuota()
	fronts := []*service{d.serveIngress(q), d.serveIngress(nil)}
	p := newPlatform()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	natstest.Eventually(t, 20*time.Second, "a quota replica answering", func() bool {
		a, err := p.send(ctx, fronts[0].base, callback.BizSDPreInvoke, "probe", "user-probe", []byte(`{}`))
		return err == nil && a.Code == http.StatusOK && a.success()
	})
	for _, tc := range []struct {
		name   string
		fronts []*service
	}{{"one replica", fronts[:1]}, {"two replicas", fronts}} {
		t.Run(tc.name, func(t *testing.T) {
			token := "user-replay-" + strings.ReplaceAll(tc.name, " ", "-")
			acct := account.FromToken(token)
			if err := grant(ctx, p, fronts[0].base, acct, 100, "grant-"+acct); err != nil {
				t.Fatal(err)
			}
			post := func(i int, q url.Values, body []byte) answer {
				t.Helper()
				req, err := http.NewRequestWithContext(ctx, http.MethodPost,
					tc.fronts[i%len(tc.fronts)].base+"/v1/callbacks/default?"+q.Encode(), strings.NewReader(string(body)))
				if err != nil {
					t.Fatal(err)
				}
				a, err := p.do(req)
				if err != nil {
					t.Fatal(err)
				}
				return a
			}
			preInvoke := []byte(`{"batch_size":2,"n_iter":1}`)
			task := []byte(`{"success":true,"data":{"generatedImageId":"g-1","url":"https://example.com/1.png"}}`)
			for _, c := range []struct {
				bizType string
				body    []byte
			}{{callback.BizAPIPreInvoke, preInvoke}, {callback.BizTaskFinished, task}} {
				orig := captured(t, c.bizType, "api-txt2img", "inv-"+acct[2:12], token, c.body)
				first := post(0, orig, c.body)
				if first.Code != http.StatusOK || !first.success() {
					t.Fatalf("%s: the original: %d %s", c.bizType, first.Code, first.Raw)
				}
				variants := shiftedVariants(orig)
				for i, v := range variants {
					if a := post(i+1, v, c.body); a.Code != http.StatusUnauthorized {
						t.Fatalf("%s: replay with apiId=%q invokeId=%q: %d %s, want 401", c.bizType, v.Get("apiId"), v.Get("invokeId"), a.Code, a.Raw)
					}
				}
				if again := post(1, orig, c.body); again.Code != first.Code || again.Raw != first.Raw {
					t.Fatalf("%s: the byte-identical repeat: %d %s, want %d %s", c.bizType, again.Code, again.Raw, first.Code, first.Raw)
				}
				t.Logf("%s: %d shifted replays refused", c.bizType, len(variants))
			}
			reserved := 0
			for _, m := range readAll(t, d.js, contract.StreamQuota, "sd.quota."+acct) {
				var e ledger.Event
				if err := json.Unmarshal(m.Data(), &e); err != nil {
					t.Fatal(err)
				}
				if e.Type == ledger.TypeReserved {
					reserved++
				}
			}
			v, err := view(ctx, p, fronts[0].base, acct)
			if err != nil {
				t.Fatal(err)
			}
			if reserved != 1 || v.Reserved != 2 || v.Balance != 98 {
				t.Fatalf("%d reserved events, %d credits reserved, balance %d; want 1, 2, 98", reserved, v.Reserved, v.Balance)
			}
			stored := 0
			for _, m := range readAll(t, d.js, contract.StreamIngress, "sd.callback.default.>") {
				if m.Headers().Get("sd-account") == acct {
					stored++
				}
			}
			if stored != 2 {
				t.Fatalf("stored %d events of the account, want 2 (one pre-invoke, one task)", stored)
			}
		})
	}
}
