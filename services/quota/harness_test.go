package quota_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/ingress"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/ledger"
	"github.com/sdevents/sdevents/streams"
)

const adminToken = "admin-secret-token"

var testKey = callback.Key{AK: "AK-test", SK: "SK-test"}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig() config.Config {
	cfg := config.Default()
	cfg.Callbacks = []config.Callback{{Name: "default", Keys: []config.Key{{AK: testKey.AK, SK: config.Secret(testKey.SK)}}}}
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Admin.Token = adminToken
	return cfg
}

// deployment is an ingress and the quota admin API on real HTTP, over one
// embedded JetStream node, with any number of quota replicas, each on its
// own NATS connection.
type deployment struct {
	t    testing.TB
	cfg  config.Config
	node *natstest.Node
	js   jetstream.JetStream
	base string
	logs *syncBuffer

	opts     []quota.Option // given to every replica
	mu       sync.Mutex
	replicas []*replica
	// valve holds every replica's RPC requests back while paused.
	valve valve
}

// replica is one running quota service.
type replica struct {
	svc    *quota.Service
	nc     *nats.Conn
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// valve holds back the requests of the replicas it gates (quota.WithGate)
// while paused, as if their processes were stopped; resume lets what was
// held through, in order. Open at first.
type valve struct {
	mu sync.Mutex
	ch chan struct{} // closed while open; nil = open
}

func (v *valve) gate() {
	v.mu.Lock()
	ch := v.ch
	v.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (v *valve) pause() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ch == nil {
		v.ch = make(chan struct{})
	}
}

func (v *valve) resume() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ch != nil {
		close(v.ch)
		v.ch = nil
	}
}

// stop cancels the replica's Run and waits for its drain.
func (r *replica) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("quota Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("quota Run did not return after cancel")
	}
	r.done = nil
}

// start runs a deployment with n quota replicas, built with opts; the admin
// API is that of the first one.
func start(t testing.TB, cfg config.Config, n int, opts ...quota.Option) *deployment {
	t.Helper()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	d := &deployment{t: t, cfg: cfg, node: node, js: js, logs: &syncBuffer{}, opts: opts}
	t.Cleanup(d.valve.resume) // a held replica cannot stop
	for range n {
		d.addReplica()
	}
	d.serveHTTP(d.replicas[0])
	return d
}

// addReplica starts one more quota replica.
func (d *deployment) addReplica() *replica {
	d.t.Helper()
	nc, _ := natstest.Connect(d.t, d.node.URL())
	reg := prometheus.NewRegistry()
	opts := append([]quota.Option{quota.WithLogger(zerolog.New(d.logs)), quota.WithGate(d.valve.gate)}, d.opts...)
	svc, err := quota.New(context.Background(), d.cfg, nc, reg, opts...)
	if err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{svc: svc, nc: nc, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	d.t.Cleanup(func() {
		if r.done != nil {
			r.stop(d.t)
		}
	})
	d.mu.Lock()
	d.replicas = append(d.replicas, r)
	d.mu.Unlock()
	// Run has subscribed once a request is answered.
	natstest.Eventually(d.t, 5*time.Second, "quota replica subscribed", func() bool {
		resp, err := nc.Request("sdevents.quota.rpc.decide", []byte(`{"biz_type":"sdPreInvoke"}`), time.Second)
		return err == nil && len(resp.Data) > 0
	})
	return r
}

// serveHTTP serves the ingress and r's admin API on a fresh loopback port.
func (d *deployment) serveHTTP(r *replica) {
	d.t.Helper()
	nc, _ := natstest.Connect(d.t, d.node.URL())
	reg := prometheus.NewRegistry()
	srv := httpserver.New(zerolog.New(d.logs), reg)
	in, err := ingress.New(context.Background(), d.cfg, nc, reg)
	if err != nil {
		d.t.Fatal(err)
	}
	in.Routes(srv.Echo())
	r.svc.Routes(srv.Echo())
	if err := srv.Listen(d.cfg.HTTP.Addr); err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	d.t.Cleanup(func() {
		cancel()
		_ = srv.Shutdown(context.Background())
		<-done
	})
	d.base = "http://" + srv.Addr()
}

// answer is a decoded HTTP answer.
type answer struct {
	Code int
	Body map[string]any
	Raw  string
}

func (a answer) success() bool { return a.Body["success"] == true }

func (a answer) errMessage() string { s, _ := a.Body["errMessage"].(string); return s }

func (a answer) data() map[string]any { m, _ := a.Body["data"].(map[string]any); return m }

// do sends one HTTP request; it fails the test only on transport errors.
func (d *deployment) do(req *http.Request) answer {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Errorf("%s %s: %v", req.Method, req.URL.Path, err)
		return answer{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{Code: resp.StatusCode, Raw: string(raw)}
	if err := json.Unmarshal(raw, &a.Body); err != nil {
		d.t.Errorf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return a
}

// callback sends a signed synchronous callback of user token for invokeID.
func (d *deployment) callback(bizType, token, invokeID string, body []byte) answer {
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
	enc, err := callback.EncryptToken(token, testKey.SK, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	p := callback.Params{APIID: "api-1", BizType: bizType, InvokeID: invokeID, APIToken: enc,
		Nonce: strconv.FormatInt(time.Now().UnixNano(), 36), Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	p.Sign = callback.Sign(testKey, p, body, token)
	q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
		"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
	return signedRequest{query: q.Encode(), body: body}
}

// send posts r to the ingress.
func (d *deployment) send(r signedRequest) answer {
	req, _ := http.NewRequest(http.MethodPost, d.base+"/v1/callbacks/default?"+r.query, bytes.NewReader(r.body))
	req.Header.Set("Content-Type", "application/json")
	return d.do(req)
}

// decisions is the number of decisions of kind (a bizType, "abandon",
// "expire", "grant") every replica has finished, stored effects included.
func (d *deployment) decisions(kind string) int {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0.0
	for _, r := range d.replicas {
		mfs, err := r.reg.Gather()
		if err != nil {
			d.t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "sdevents_quota_decisions_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "kind" && l.GetValue() == kind {
						n += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return int(n)
}

func (d *deployment) reserve(token, invokeID string) answer {
	return d.callback(callback.BizAPIPreInvoke, token, invokeID, []byte(`{"batch_size":1,"n_iter":1}`))
}

// admin sends an operator request with the given bearer token ("" = none).
func (d *deployment) admin(method, path, bearer, body string) answer {
	req, _ := http.NewRequest(method, d.base+path, bytes.NewReader([]byte(body)))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return d.do(req)
}

// grant adds credits to the account of token through the admin API.
func (d *deployment) grant(token string, credits int64, id string) answer {
	d.t.Helper()
	body := fmt.Sprintf(`{"credits": %d, "id": %q}`, credits, id)
	a := d.admin(http.MethodPost, "/v1/admin/accounts/"+url.PathEscape("token:"+token)+"/credits", adminToken, body)
	if a.Code != http.StatusOK {
		d.t.Fatalf("grant: %d %s", a.Code, a.Raw)
	}
	return a
}

// view reads an account through the admin API.
func (d *deployment) view(acct string) quota.AccountView {
	d.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.base+"/v1/admin/accounts/"+url.PathEscape(acct), nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var v quota.AccountView
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &v) != nil {
		d.t.Fatalf("view %s: %d %s", acct, resp.StatusCode, raw)
	}
	return v
}

// stored is one QUOTA event with its sequence.
type stored struct {
	Seq uint64
	ledger.Event
}

// events returns every QUOTA event of account acct, in order.
func (d *deployment) events(acct string) []stored {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := d.js.Stream(ctx, streams.Quota)
	if err != nil {
		d.t.Fatal(err)
	}
	var out []stored
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("sd.quota."+acct))
		if err != nil {
			break
		}
		var e ledger.Event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			d.t.Fatal(err)
		}
		out = append(out, stored{m.Sequence, e})
		seq = m.Sequence
	}
	return out
}

// replay folds the whole QUOTA stream and fails the test on any difference.
func (d *deployment) replay() quota.ReplayReport {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := quota.Replay(ctx, d.js, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	if len(rep.Differ) > 0 {
		d.t.Fatalf("replay found differences: %+v", rep.Differ)
	}
	return rep
}

func acctOf(token string) string { return account.FromToken(token) }
