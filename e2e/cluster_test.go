package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/archiver"
	"github.com/sdevents/sdevents/services/ingress"
	"github.com/sdevents/sdevents/services/quota"
)

const adminToken = "e2e-admin-token"

var platformKey = callback.Key{AK: "AK-e2e", SK: "SK-e2e"}

// deployment is a three-node JetStream cluster on loopback with the
// project's streams applied at R3, and an operator connection to it.
type deployment struct {
	t     *testing.T
	nodes []node
	urls  string // every node's client URL, comma-separated
	js    jetstream.JetStream
	// ingress, quota, archiver and aggregator configure the replicas a
	// test starts; the archivers' sink is the directory archiveDir.
	ingress    ingress.Config
	quota      quota.Config
	archiver   archiver.Config
	archiveDir string
	aggregator aggregator.Config
}

// operatedQuota is the quota configuration of a test deployment: the
// defaults, with the operator API on.
func operatedQuota() quota.Config { return quota.Config{AdminToken: adminToken} }

// platformIngress is the ingress configuration of a test deployment: the
// platform's callback source.
func platformIngress() ingress.Config {
	return ingress.Config{Callbacks: []ingress.CallbackSource{{Name: "default", Keys: []callback.Key{platformKey}}}}
}

// faults are the two ways the proofs take a node down: a clean shutdown of
// an in-process server, and SIGKILL of a nats-server process (nothing
// flushed, nothing handed over). Every proof runs with both.
var faults = []struct {
	name   string
	deploy func(*testing.T) *deployment
}{
	{"shutdown", newDeployment},
	{"sigkill", newProcDeployment},
}

// newDeployment is a cluster of in-process servers; stop shuts a node down.
func newDeployment(t *testing.T) *deployment {
	t.Helper()
	c := natstest.StartCluster(t)
	d := deployOn(t, c.URLs())
	for _, n := range c.Nodes {
		d.nodes = append(d.nodes, inProcess{n})
	}
	return d
}

// newProcDeployment is a cluster of nats-server processes; stop kills a
// node with SIGKILL.
func newProcDeployment(t *testing.T) *deployment {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs nats-server: not in -short")
	}
	c := startProcCluster(t)
	d := deployOn(t, c.urls())
	for _, n := range c.nodes {
		d.nodes = append(d.nodes, n)
	}
	return d
}

// deployOn connects to the cluster at urls, applies the streams at R3 and
// returns the deployment, its services configured as the tests start them.
func deployOn(t *testing.T, urls string) *deployment {
	t.Helper()
	_, js := natstest.Connect(t, urls)
	natstest.ApplyStreams(t, js, 3)
	return &deployment{t: t, urls: urls, js: js, ingress: platformIngress(), quota: operatedQuota()}
}

// connect opens a service connection that knows every node and reconnects
// forever, as a deployed service's does, with its JetStream context.
func (d *deployment) connect() (*nats.Conn, jetstream.JetStream) {
	d.t.Helper()
	return natstest.Connect(d.t, d.urls)
}

// streamLeader returns the node the cluster names as the leader of stream.
func (d *deployment) streamLeader(stream string) node {
	d.t.Helper()
	return d.leader("stream "+stream, func(ctx context.Context) (*jetstream.ClusterInfo, error) {
		s, err := d.js.Stream(ctx, stream)
		if err != nil {
			return nil, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil, err
		}
		return info.Cluster, nil
	})
}

// consumerLeader returns the node the cluster names as the leader of
// consumer of stream.
func (d *deployment) consumerLeader(stream, consumer string) node {
	d.t.Helper()
	return d.leader("consumer "+consumer, func(ctx context.Context) (*jetstream.ClusterInfo, error) {
		c, err := d.js.Consumer(ctx, stream, consumer)
		if err != nil {
			return nil, err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return nil, err
		}
		return info.Cluster, nil
	})
}

func (d *deployment) leader(what string, cluster func(context.Context) (*jetstream.ClusterInfo, error)) node {
	d.t.Helper()
	var leader node
	natstest.Eventually(d.t, 30*time.Second, "a leader of "+what, func() bool {
		ctx, cancel := context.WithTimeout(d.t.Context(), 2*time.Second)
		defer cancel()
		ci, err := cluster(ctx)
		if err != nil || ci == nil {
			return false
		}
		for _, n := range d.nodes {
			if n.name() == ci.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// localState is what node n itself stores of stream (not what the leader
// reports), or false while the node cannot tell.
func localState(n node, stream string) (server.StreamState, bool) {
	acc, ok := n.jsz()
	if !ok {
		return server.StreamState{}, false
	}
	for _, s := range acc.Streams {
		if s.Name == stream {
			return s.State, true
		}
	}
	return server.StreamState{}, false
}

// waitReplicasConverge waits until every node stores msgs messages of stream
// up to the same last sequence: a restarted node has caught up.
func (d *deployment) waitReplicasConverge(stream string, msgs uint64, timeout time.Duration) {
	d.t.Helper()
	natstest.Eventually(d.t, timeout, fmt.Sprintf("every node storing %d messages of %s", msgs, stream), func() bool {
		var last uint64
		for i, n := range d.nodes {
			st, ok := localState(n, stream)
			if !ok || st.Msgs != msgs || (i > 0 && st.LastSeq != last) {
				return false
			}
			last = st.LastSeq
		}
		return true
	})
}

// waitOrDiagnose is natstest.Eventually that, on a timeout, first logs what
// every running node knows of the streams' leaders and replicas, and the
// latest answers the platform got.
func waitOrDiagnose(t *testing.T, d *deployment, p *platform, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			for _, n := range d.nodes {
				acc, ok := n.jsz()
				if !ok {
					t.Logf("%s: no answer", n.name())
					continue
				}
				for _, s := range acc.Streams {
					if s.Cluster != nil {
						b, _ := json.Marshal(s.Cluster)
						t.Logf("%s sees %s: msgs %d last %d cluster %s", n.name(), s.Name, s.State.Msgs, s.State.LastSeq, b)
					}
				}
			}
			p.last.Range(func(k, v any) bool { t.Logf("last answer %v: %v", k, v); return true })
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// service is one running HTTP front: an ingress, optionally with a quota
// replica's admin API, on a loopback port.
type service struct {
	base    string
	ingress *ingress.Service
}

// serveIngress runs an ingress replica (its own connection, its own
// de-duplication index) on real HTTP until the test ends. With admin, the
// quota replica's operator API is served beside it.
func (d *deployment) serveIngress(admin *quota.Service) *service {
	d.t.Helper()
	reg := prometheus.NewRegistry()
	srv := httpserver.New(zerolog.New(io.Discard), reg)
	_, js := d.connect()
	in, err := ingress.New(d.t.Context(), d.ingress, js, reg)
	if err != nil {
		d.t.Fatal(err)
	}
	in.Routes(srv.Echo())
	if admin != nil {
		admin.Routes(srv.Echo())
	}
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { defer func() { done <- struct{}{} }(); _ = srv.Run(ctx) }()
	go func() { defer func() { done <- struct{}{} }(); _ = in.Run(ctx) }()
	d.t.Cleanup(func() {
		cancel()
		_ = srv.Shutdown(context.Background())
		<-done
		<-done
	})
	natstest.Eventually(d.t, 20*time.Second, "ingress ready", func() bool { return in.Ready(ctx) == nil })
	return &service{base: "http://" + srv.Addr(), ingress: in}
}

// startQuota runs a quota replica on its own connection until the test ends.
func (d *deployment) startQuota() *quota.Service {
	d.t.Helper()
	nc, js := d.connect()
	svc, err := quota.New(d.t.Context(), d.quota, js, prometheus.NewRegistry())
	if err != nil {
		d.t.Fatal(err)
	}
	startReplica(d.t, "quota", nc, svc.Run)
	return svc
}

// platform sends callbacks the way the platform does: every attempt is
// signed afresh (new nonce, timestamp and sign) over the same body and
// invokeId.
type platform struct {
	client *http.Client
	// last keeps the latest answer per non-2xx status (or "error" for a
	// transport error), for diagnostics.
	last sync.Map
}

func newPlatform() *platform {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	return &platform{client: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// answer is one HTTP answer, decoded.
type answer struct {
	Code int
	Body map[string]any
	Raw  string
}

func (a answer) ok() bool      { return a.Code >= 200 && a.Code < 300 }
func (a answer) success() bool { return a.Body["success"] == true }

// send signs and POSTs one callback to base. A transport error is returned
// as such (the platform would retry it like a 5xx).
func (p *platform) send(ctx context.Context, base, bizType, invokeID, token string, body []byte) (answer, error) {
	enc, err := callback.EncryptToken(token, platformKey.SK, nil)
	if err != nil {
		return answer{}, err
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	par := callback.Params{APIID: "api-e2e", BizType: bizType, InvokeID: invokeID, APIToken: enc,
		Nonce: hex.EncodeToString(nonce[:]), Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	par.Sign = callback.Sign(platformKey, par, body, token)
	q := url.Values{"apiId": {par.APIID}, "bizType": {par.BizType}, "invokeId": {par.InvokeID}, "apiToken": {par.APIToken},
		"sign": {par.Sign}, "nonce": {par.Nonce}, "timestamp": {par.Timestamp}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/callbacks/default?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	return p.do(req)
}

func (p *platform) do(req *http.Request) (answer, error) {
	resp, err := p.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{Code: resp.StatusCode, Raw: string(raw)}
	if err := json.Unmarshal(raw, &a.Body); err != nil {
		return a, fmt.Errorf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	if a.Code >= 400 && a.Body["success"] != false {
		return a, fmt.Errorf("error answer %d without success:false: %s", a.Code, raw)
	}
	return a, nil
}

// deliver sends an asynchronous callback until it is answered 2xx, retrying
// every non-2xx answer and transport error after a short pause (the platform
// waits longer; the behaviour is the same). It returns the number of
// attempts, or an error when ctx ends first.
func (p *platform) deliver(ctx context.Context, base, bizType, invokeID, token string, body []byte) (int, error) {
	pause := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		a, err := p.send(ctx, base, bizType, invokeID, token, body)
		switch {
		case err != nil:
			p.last.Store("error", err.Error())
		case !a.ok():
			p.last.Store(a.Code, a.Raw)
		}
		if err == nil && a.ok() {
			if !a.success() {
				return attempt, fmt.Errorf("%s: 2xx without success: %s", invokeID, a.Raw)
			}
			return attempt, nil
		}
		if err == nil && a.Code != http.StatusServiceUnavailable {
			// Only "could not store, retry" is expected from a healthy ingress.
			return attempt, fmt.Errorf("%s: unexpected answer %d %s", invokeID, a.Code, a.Raw)
		}
		select {
		case <-ctx.Done():
			return attempt, fmt.Errorf("%s: not delivered after %d attempts: %w", invokeID, attempt, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 400*time.Millisecond)
	}
}

// readAll returns every message of stream on subjects filter ("" = all), in
// order, through an ordered consumer. The server may place that consumer on
// any replica of the stream, one still catching up after a restart
// included, which then delivers only what it holds: after restarting a
// node, wait for the replicas to converge (waitReplicasConverge) first.
//
// A restarted node that rejoins may call a meta leader election, and a
// JetStream API request sent meanwhile goes unanswered: a read that times
// out starts again, for up to a minute.
func readAll(t *testing.T, js jetstream.JetStream, stream, filter string) []jetstream.Msg {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := readAllOnce(t.Context(), js, stream, filter)
		if err == nil {
			return out
		}
		unanswered := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
		if !unanswered || time.Now().After(deadline) {
			t.Fatalf("read %s: %v", stream, err)
		}
		t.Logf("read %s: %v; reading again", stream, err)
	}
}

// readAllOnce is one attempt of readAll, bounded by 15 s.
func readAllOnce(ctx context.Context, js jetstream.JetStream, stream, filter string) ([]jetstream.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	var opts []jetstream.StreamInfoOpt
	if filter != "" {
		opts = append(opts, jetstream.WithSubjectFilter(filter))
	}
	info, err := s.Info(ctx, opts...)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 || filter != "" && len(info.State.Subjects) == 0 {
		return nil, nil
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	c, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, err
	}
	var out []jetstream.Msg
	for {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			out = append(out, m)
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			if md.NumPending == 0 {
				return out, nil
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("only %d messages before the deadline (%v): %w", len(out), batch.Error(), ctx.Err())
		}
	}
}

// replica is one service replica running on its own connection until the
// test ends, or until kill.
type replica struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

// startReplica runs run (a service's Run) on nc in the background.
func startReplica(t *testing.T, name string, nc *nats.Conn, run func(context.Context) error) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := run(ctx); err != nil {
			t.Errorf("%s Run: %v", name, err)
		}
	}()
	t.Cleanup(r.stop)
	return r
}

// kill takes the replica down as a crash would: its connection drops with
// its messages unacknowledged, then what it still runs is stopped.
func (r *replica) kill() {
	r.nc.Close()
	r.stop()
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
}

// streamMsgs is the number of messages stream holds, 0 while it cannot be
// read.
func (d *deployment) streamMsgs(stream string) uint64 {
	ctx, cancel := context.WithTimeout(d.t.Context(), 2*time.Second)
	defer cancel()
	s, err := d.js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}
