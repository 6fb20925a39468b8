// Package quotatest runs quota replicas for tests: any number over one
// embedded JetStream node, each on its own NATS connection, with the admin
// API of one of them on real HTTP on loopback, a valve that holds every
// replica's RPC requests back as a stopped process would, and readers of
// the QUOTA stream and of the replicas' metrics. A Front mounts more routes
// on the HTTP server — the e2e tests mount the ingress there; this package
// imports no other service.
//
// Every helper takes the test of the Deployment, fails it on what it
// cannot do, and cleans up what it started when the test ends.
package quotatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// AdminToken is the admin token of Config.
const AdminToken = "admin-secret-token"

// Key is the signing key of Config's callback source "default".
var Key = callback.Key{AK: "AK-test", SK: "SK-test"}

// Config is every default of quota.Config spelled out, with the admin API
// on (AdminToken). The ingress a Front serves waits for a decision as long
// as DecideDeadline, as in a process of the binary.
func Config() quota.Config {
	return quota.Config{
		PerImage: quota.DefaultPerImage, ReservationTTL: quota.DefaultReservationTTL,
		DecidedRetention: quota.DefaultDecidedRetention, SnapshotEvery: quota.DefaultSnapshotEvery,
		MaxAccounts: quota.DefaultMaxAccounts, AccountIdle: quota.DefaultAccountIdle,
		DecideDeadline: quota.DefaultDecideDeadline, RequestMaxAge: quota.DefaultRequestMaxAge,
		AdminToken: AdminToken,
	}
}

// AcctOf is the account id of a user token.
func AcctOf(token string) string { return account.FromToken(token) }

// Front mounts routes beside the admin API on a Deployment's HTTP server,
// with a NATS connection of their own and the server's registry.
type Front func(tb testing.TB, cfg quota.Config, js jetstream.JetStream, reg prometheus.Registerer, e *echo.Echo)

// Deployment is quota replicas over one embedded JetStream node, with an
// HTTP server on loopback serving one replica's admin API and the Front.
type Deployment struct {
	T    testing.TB
	Cfg  quota.Config
	Node *natstest.Node
	// JS is a connection of the test's own to the node; replace it after
	// restarting the node.
	JS jetstream.JetStream
	// Base is the HTTP server's URL (http://127.0.0.1:port).
	Base string
	// Logs receives every replica's log and the HTTP request log.
	Logs *SyncBuffer
	// Valve holds back every replica's RPC requests while paused
	// (quota.WithGate).
	Valve Valve

	front    Front
	opts     []quota.Option // given to every replica
	client   *nats.Conn     // the test's requests to the replicas
	mu       sync.Mutex
	replicas []*Replica
}

// Replica is one running quota service.
type Replica struct {
	Svc    *quota.Service
	NC     *nats.Conn
	Reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// Stop cancels the replica's Run and waits for its drain, failing t if Run
// returns an error or does not return within 20 s.
func (r *Replica) Stop(t testing.TB) {
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

// Start runs a deployment of n quota replicas built with cfg and opts, the
// streams of streams/ applied, and serves the first replica's admin API and
// front (nil: none) on a fresh loopback port.
func Start(t testing.TB, cfg quota.Config, n int, front Front, opts ...quota.Option) *Deployment {
	t.Helper()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	client, _ := natstest.Connect(t, node.URL())
	d := &Deployment{T: t, Cfg: cfg, Node: node, JS: js, Logs: &SyncBuffer{}, front: front, opts: opts, client: client}
	t.Cleanup(d.Valve.Resume) // a held replica cannot stop
	for range n {
		d.AddReplica()
	}
	d.ServeHTTP(d.Replica(0))
	return d
}

// Replica returns the i-th replica started.
func (d *Deployment) Replica(i int) *Replica {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.replicas[i]
}

// AddReplica starts one more quota replica and returns once it answers on
// the decide subject; it is stopped when the test ends.
func (d *Deployment) AddReplica() *Replica {
	d.T.Helper()
	nc, js := natstest.Connect(d.T, d.Node.URL())
	reg := prometheus.NewRegistry()
	opts := append([]quota.Option{quota.WithLogger(zerolog.New(d.Logs)), quota.WithGate(d.Valve.gate)}, d.opts...)
	svc, err := quota.New(context.Background(), d.Cfg, js, reg, opts...)
	if err != nil {
		d.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Replica{Svc: svc, NC: nc, Reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	d.T.Cleanup(func() {
		if r.done != nil {
			r.Stop(d.T)
		}
	})
	d.mu.Lock()
	d.replicas = append(d.replicas, r)
	d.mu.Unlock()
	// Run has subscribed once a request is answered.
	natstest.Eventually(d.T, 5*time.Second, "quota replica subscribed", func() bool {
		resp, err := nc.Request(quotarpc.SubjectDecide, []byte(`{"biz_type":"sdPreInvoke"}`), time.Second)
		return err == nil && len(resp.Data) > 0
	})
	return r
}

// ServeHTTP serves the front and r's admin API on a fresh loopback port,
// which Base names from then on.
func (d *Deployment) ServeHTTP(r *Replica) {
	d.T.Helper()
	_, js := natstest.Connect(d.T, d.Node.URL())
	reg := prometheus.NewRegistry()
	srv := httpserver.New(zerolog.New(d.Logs), reg)
	if d.front != nil {
		d.front(d.T, d.Cfg, js, reg, srv.Echo())
	}
	r.Svc.Routes(srv.Echo())
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		d.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	d.T.Cleanup(func() {
		cancel()
		_ = srv.Shutdown(context.Background())
		<-done
	})
	d.Base = "http://" + srv.Addr()
}

// Answer is a decoded HTTP answer.
type Answer struct {
	Code int
	Body map[string]any
	Raw  string
}

// Success is the answer's "success".
func (a Answer) Success() bool { return a.Body["success"] == true }

// ErrMessage is the answer's "errMessage".
func (a Answer) ErrMessage() string { s, _ := a.Body["errMessage"].(string); return s }

// Data is the answer's "data" object, nil without one.
func (a Answer) Data() map[string]any { m, _ := a.Body["data"].(map[string]any); return m }

// Do sends one HTTP request; it fails the test only on transport errors
// and on an answer that is not JSON.
func (d *Deployment) Do(req *http.Request) Answer {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.T.Errorf("%s %s: %v", req.Method, req.URL.Path, err)
		return Answer{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := Answer{Code: resp.StatusCode, Raw: string(raw)}
	if err := json.Unmarshal(raw, &a.Body); err != nil {
		d.T.Errorf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return a
}

// Admin sends an operator request with the given bearer token ("" = none).
func (d *Deployment) Admin(method, path, bearer, body string) Answer {
	req, _ := http.NewRequest(method, d.Base+path, bytes.NewReader([]byte(body)))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return d.Do(req)
}

// Grant adds credits to the account of token through the admin API and
// fails the test unless it is answered 200.
func (d *Deployment) Grant(token string, credits int64, id string) Answer {
	d.T.Helper()
	body := fmt.Sprintf(`{"credits": %d, "id": %q}`, credits, id)
	a := d.Admin(http.MethodPost, "/v1/admin/accounts/"+url.PathEscape("token:"+token)+"/credits", AdminToken, body)
	if a.Code != http.StatusOK {
		d.T.Fatalf("grant: %d %s", a.Code, a.Raw)
	}
	return a
}

// View reads an account (an id or token:<token>) through the admin API.
func (d *Deployment) View(acct string) quota.AccountView {
	d.T.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.Base+"/v1/admin/accounts/"+url.PathEscape(acct), nil)
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.T.Fatal(err)
	}
	defer resp.Body.Close()
	var v quota.AccountView
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &v) != nil {
		d.T.Fatalf("view %s: %d %s", acct, resp.StatusCode, raw)
	}
	return v
}

// Decide asks the replicas for the answer to one synchronous callback over
// NATS, as the ingress does once the callback is stored; it fails the test
// when no replica answers within 10 s.
func (d *Deployment) Decide(req quotarpc.DecideRequest) quotarpc.Answer {
	d.T.Helper()
	if req.RequestID == "" {
		req.RequestID = quotarpc.NewRequestID()
	}
	if req.At.IsZero() {
		req.At = time.Now()
	}
	data, err := json.Marshal(req)
	if err != nil {
		d.T.Fatal(err)
	}
	resp, err := d.client.Request(quotarpc.SubjectDecide, data, 10*time.Second)
	if err != nil {
		d.T.Fatalf("decide %s: %v", req.BizType, err)
	}
	var ans quotarpc.Answer
	if err := json.Unmarshal(resp.Data, &ans); err != nil {
		d.T.Fatalf("decide %s: answer %q: %v", req.BizType, resp.Data, err)
	}
	return ans
}

// Decisions is the number of decisions of kind (a bizType, "abandon",
// "expire", "sweep", "grant") every replica has finished, stored effects
// included.
func (d *Deployment) Decisions(kind string) int {
	d.T.Helper()
	n := 0.0
	for _, m := range d.metrics("sdevents_quota_decisions_total") {
		for _, l := range m.GetLabel() {
			if l.GetName() == "kind" && l.GetValue() == kind {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int(n)
}

// Counter is the sum of a counter or gauge family over the replicas.
func (d *Deployment) Counter(name string) int {
	d.T.Helper()
	n := 0.0
	for _, m := range d.metrics(name) {
		n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return int(n)
}

// CounterWith is the sum over the replicas of the series of the counter
// family name that carry every label of labels.
func (d *Deployment) CounterWith(name string, labels map[string]string) int {
	d.T.Helper()
	n := 0.0
next:
	for _, m := range d.metrics(name) {
		for k, v := range labels {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				continue next
			}
		}
		n += m.GetCounter().GetValue()
	}
	return int(n)
}

// Stored is one QUOTA event with its sequence.
type Stored struct {
	Seq uint64
	ledger.Event
}

// Events returns every QUOTA event of account acct, in order.
func (d *Deployment) Events(acct string) []Stored {
	d.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := d.JS.Stream(ctx, contract.StreamQuota)
	if err != nil {
		d.T.Fatal(err)
	}
	var out []Stored
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("sd.quota."+acct))
		if err != nil {
			break
		}
		var e ledger.Event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			d.T.Fatal(err)
		}
		out = append(out, Stored{m.Sequence, e})
		seq = m.Sequence
	}
	return out
}

// Replay folds the whole QUOTA stream and fails the test on any difference.
func (d *Deployment) Replay() quota.ReplayReport {
	d.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := quota.Replay(ctx, d.JS, nil)
	if err != nil {
		d.T.Fatal(err)
	}
	if len(rep.Differ) > 0 {
		d.T.Fatalf("replay found differences: %+v", rep.Differ)
	}
	return rep
}

// metrics returns the series of the family name over every replica.
func (d *Deployment) metrics(name string) []*dto.Metric {
	d.T.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*dto.Metric
	for _, r := range d.replicas {
		mfs, err := r.Reg.Gather()
		if err != nil {
			d.T.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				out = append(out, mf.GetMetric()...)
			}
		}
	}
	return out
}

// History appends n events to acct's ledger as a replica without snapshots
// wrote them (a grant, then reservations and commits), spread evenly over
// the span before now, straight to the stream, and returns the account they
// fold to.
func (d *Deployment) History(acct string, n int, span time.Duration) *ledger.Account {
	d.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := ledger.NewAccount(acct)
	start := time.Now().Add(-span).UTC()
	var futures []jetstream.PubAckFuture
	var last uint64
	step := span / time.Duration(n)
	for i := range n {
		at := start.Add(step * time.Duration(i))
		var dec ledger.Decision
		switch {
		case i == 0:
			dec = a.Grant("", ledger.MaxCredits/2, at)
		case i%2 == 1:
			dec = a.Reserve(fmt.Sprintf("old-%d", i), "r", 1, time.Hour, at)
		default:
			dec = a.Commit(fmt.Sprintf("old-%d", i-1), at)
		}
		data, err := json.Marshal(dec.Events[0])
		if err != nil {
			d.T.Fatal(err)
		}
		f, err := d.JS.PublishAsync("sd.quota."+acct, data)
		if err != nil {
			d.T.Fatal(err)
		}
		futures = append(futures, f)
		last++
		if err := a.Apply(dec.Events[0], last); err != nil { // sequences as if alone in the stream
			d.T.Fatal(err)
		}
	}
	select {
	case <-d.JS.PublishAsyncComplete():
	case <-ctx.Done():
		d.T.Fatal("publishing the history timed out")
	}
	for _, f := range futures {
		select {
		case err := <-f.Err():
			d.T.Fatal(err)
		default:
		}
	}
	return a
}

// Valve holds back the requests of the replicas it gates (quota.WithGate)
// while paused, as if their processes were stopped; Resume lets what was
// held through, in order. Open at first.
type Valve struct {
	mu sync.Mutex
	ch chan struct{} // closed while open; nil = open
}

func (v *Valve) gate() {
	v.mu.Lock()
	ch := v.ch
	v.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// Pause holds back every request from now on.
func (v *Valve) Pause() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ch == nil {
		v.ch = make(chan struct{})
	}
}

// Resume lets the held requests, and every later one, through.
func (v *Valve) Resume() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ch != nil {
		close(v.ch)
		v.ch = nil
	}
}

// SyncBuffer is a log sink safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
