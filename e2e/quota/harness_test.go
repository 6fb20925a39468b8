// The quota service behind the ingress: signed callbacks over real HTTP,
// decided by quota replicas over NATS (services/quota/quotatest), with the
// ingress's deadlines, abandonments and replays in the path.
package quota_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/services/ingress"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/quotatest"
)

// deployment is quota replicas with the ingress on their HTTP server.
type deployment struct {
	*quotatest.Deployment
}

// start runs n quota replicas built with opts and the ingress, over one
// embedded JetStream node.
func start(t testing.TB, cfg quota.Config, n int, opts ...quota.Option) *deployment {
	t.Helper()
	return &deployment{quotatest.Start(t, cfg, n, serveIngress, opts...)}
}

// serveIngress is the ingress's routes on e (the ingress is not Run: no
// consumers are needed to store and answer callbacks).
//
// It waits for a decision as long as the quota takes for it, as in a
// process of the binary.
func serveIngress(tb testing.TB, cfg quota.Config, js jetstream.JetStream, reg prometheus.Registerer, e *echo.Echo) {
	icfg := ingress.Config{Callbacks: []ingress.CallbackSource{{Name: "default", Keys: []callback.Key{quotatest.Key}}},
		SyncDeadline: cfg.DecideDeadline}
	in, err := ingress.New(context.Background(), icfg, js, reg)
	if err != nil {
		tb.Fatal(err)
	}
	in.Routes(e)
}

// callback sends a signed synchronous callback of user token for invokeID.
func (d *deployment) callback(bizType, token, invokeID string, body []byte) quotatest.Answer {
	return d.send(d.signed(bizType, token, invokeID, body))
}

// signedRequest is one signed callback, as the platform sends it: sending
// it again is a byte-identical replay.
type signedRequest struct {
	query string
	body  []byte
}

// signed signs a synchronous callback of user token for invokeID, with a
// fresh nonce and timestamp.
func (d *deployment) signed(bizType, token, invokeID string, body []byte) signedRequest {
	enc, err := callback.EncryptToken(token, quotatest.Key.SK, nil)
	if err != nil {
		d.T.Fatal(err)
	}
	p := callback.Params{APIID: "api-1", BizType: bizType, InvokeID: invokeID, APIToken: enc,
		Nonce: strconv.FormatInt(time.Now().UnixNano(), 36), Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	p.Sign = callback.Sign(quotatest.Key, p, body, token)
	q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
		"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
	return signedRequest{query: q.Encode(), body: body}
}

// send posts r to the ingress.
func (d *deployment) send(r signedRequest) quotatest.Answer {
	req, _ := http.NewRequest(http.MethodPost, d.Base+"/v1/callbacks/default?"+r.query, bytes.NewReader(r.body))
	req.Header.Set("Content-Type", "application/json")
	return d.Do(req)
}

func (d *deployment) reserve(token, invokeID string) quotatest.Answer {
	return d.callback(callback.BizAPIPreInvoke, token, invokeID, []byte(`{"batch_size":1,"n_iter":1}`))
}
