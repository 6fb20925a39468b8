package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/jshealth"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/ingress"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/simulator"
)

// TestPartitions runs the callback simulator (with its end-state
// verification) through a load balancer in front of two ingress replicas,
// with two quota replicas and an aggregator, against a three-node cluster
// of nats-server processes (R3) whose links are cut with packet filters
// (partition_net_test.go), in three scenarios:
//
//  1. leader isolated: the node leading INGRESS — where ingress "in-1" is
//     connected, with every node in its server list — is cut off for 20 s;
//  2. pinned: the node ingress "in-2" is pinned to (its only server) is cut
//     off for 15 s;
//  3. flapping: the node then leading INGRESS loses its links for 3 s
//     every 3 s, three times.
//
// Every service replica is wired as `sdevents` wires a process: readiness
// that needs each written stream's leader with a quorum, and a mover that
// takes the connection off a server that cannot write (pkg/jshealth). The
// balancer sends requests only to replicas whose /readyz is green.
//
// It asserts the end state: every request answered 2xx stored exactly once
// in INGRESS, no account ever overdrawn, balances = grants − commits with
// no reservation left open, one record per job. It logs, per scenario and
// replica, when readiness turned red after the cut and green again, how
// long direct probe callbacks were refused, and how soon they were stored
// again after the heal (docs/operations.md, "Partitions", has the figures).
//
// It needs root and iptables (owner, conntrack and connmark matches) and is
// skipped, saying why, elsewhere; not in -short.
func TestPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("partition proof: not in -short")
	}
	if why := partitionSupport(); why != "" {
		t.Skipf("partition proof skipped: %s", why)
	}
	pn := newPartNet(t)
	nodes := startPartCluster(t, pn)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url())
	}
	d := deployOn(t, strings.Join(urls, ","))
	d.quota.ReservationTTL = 15 * time.Second
	pd := &partDeployment{deployment: d, nodes: nodes}

	// in-1 starts on the INGRESS leader and knows every node; in-2 knows
	// only a follower.
	leader := pd.leaderOf(contract.StreamIngress)
	follower := (leader + 1) % len(nodes)
	q1 := pd.startQuota("quota-1", urls)
	q2 := pd.startQuota("quota-2", urls)
	pd.startAggregator("aggregator", urls)
	in1 := pd.serveIngress("in-1", append([]string{nodes[leader].url()}, without(urls, leader)...), false, q1)
	in2 := pd.serveIngress("in-2", []string{nodes[follower].url()}, true, q2)
	replicas := []*partReplica{in1, in2}
	lb := startBalancer(t, replicas)
	for _, r := range replicas {
		r.startProbe(t)
	}

	const traffic = 85 * time.Second
	sim, err := simulator.NewCallbacks(simulator.CallbacksConfig{
		Target: lb.base, Source: "default", Keys: []callback.Key{platformKey}, AdminToken: adminToken,
		Users: 8, Credits: 30, TopUps: 3, Rate: 4, Duration: traffic, Drain: 45 * time.Second,
		TimeScale: 0.05, ImageAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Run(t.Context()) }()

	// The scenarios, while the simulator runs. Each phase lasts until what it
	// is there to cause has been seen, within bounds that fail the test.
	stamp := func(what string, n *partNode) { t.Logf("%s %s %s", time.Now().Format("15:04:05.0"), what, n.id) }
	var scenarios []*scenario
	// settle waits for every replica to be ready and to have stored a steady
	// run of probes (two seconds' worth) asked after that.
	settle := func() {
		natstest.Eventually(t, 60*time.Second, "every replica ready and storing", func() bool {
			for _, r := range replicas {
				if !r.ready.Load() || !r.storing.Load() {
					return false
				}
			}
			return true
		})
		steady := time.Now()
		natstest.Eventually(t, 30*time.Second, "a steady stretch of stored probes", func() bool {
			for _, r := range replicas {
				if stored, refused := r.probesSince(steady); stored < steadyProbes || refused > 0 {
					return false
				}
			}
			return true
		})
	}
	natstest.Eventually(t, 30*time.Second, "simulator traffic stored", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		st, err := d.js.Stream(ctx, contract.StreamIngress)
		return err == nil && st.CachedInfo().State.Msgs >= 20
	})
	settle()

	// The leader stays cut off until in-1, on it, has been seen unready and
	// the majority (in-2, on a follower) has stored ten seconds of probes
	// after that: a new leader took over and served under traffic.
	s := &scenario{name: fmt.Sprintf("leader isolated (%s, INGRESS leader; in-1 on it)", nodes[leader].id)}
	s.cut = time.Now()
	pn.cut(leader)
	stamp("cut", nodes[leader])
	holdUntil(t, "in-1 unready, then in-2 storing through a new leader", func() bool {
		red := in1.firstUnready(s.cut)
		stored, _ := in2.probesSince(red)
		return !red.IsZero() && stored >= faultProbes
	})
	pn.heal(leader)
	s.heal = time.Now()
	stamp("healed", nodes[leader])
	settle()
	s.end = time.Now()
	scenarios = append(scenarios, s)

	// The pinned node stays cut off until in-2, which knows no other, has
	// been seen unready and in-1 has stored ten seconds of probes after
	// that.
	s = &scenario{name: fmt.Sprintf("pinned (%s, the only node in-2 knows)", nodes[follower].id)}
	s.cut = time.Now()
	pn.cut(follower)
	stamp("cut", nodes[follower])
	holdUntil(t, "in-2 unready, then in-1 storing", func() bool {
		red := in2.firstUnready(s.cut)
		stored, _ := in1.probesSince(red)
		return !red.IsZero() && stored >= faultProbes
	})
	pn.heal(follower)
	s.heal = time.Now()
	stamp("healed", nodes[follower])
	settle()
	s.end = time.Now()
	scenarios = append(scenarios, s)

	// Three flaps of the INGRESS leader, as short as they can be felt: each
	// cut lasts until a probe was refused or a replica seen unready, each
	// link until every replica is ready and storing again.
	flapper := pd.leaderOf(contract.StreamIngress)
	s = &scenario{name: fmt.Sprintf("flapping (%s, INGRESS leader: cut until felt, linked until all store, three times)", nodes[flapper].id)}
	s.cut = time.Now()
	for i := range 3 {
		cut := time.Now()
		pn.cut(flapper)
		stamp("cut", nodes[flapper])
		holdUntil(t, "a probe refused or a replica unready", func() bool {
			for _, r := range replicas {
				if _, refused := r.probesSince(cut); refused > 0 || !r.firstUnready(cut).IsZero() {
					return true
				}
			}
			return false
		})
		pn.heal(flapper)
		stamp("healed", nodes[flapper])
		if i < 2 {
			holdUntil(t, "every replica ready and storing", func() bool {
				for _, r := range replicas {
					if stored, _ := r.probesSince(time.Now().Add(-time.Second)); !r.ready.Load() || stored == 0 || !r.storing.Load() {
						return false
					}
				}
				return true
			})
		}
	}
	s.heal = time.Now()
	settle()
	s.end = time.Now()
	scenarios = append(scenarios, s)

	if err := <-simDone; err != nil {
		t.Fatalf("simulator: %v", err)
	}
	for _, r := range replicas {
		r.stopProbe()
	}

	// The figures.
	var sum []string
	for _, s := range scenarios {
		bad, total := lb.refused(s)
		t.Logf("scenario %s: cut for %s; through the balancer %d of %d answers 5xx", s.name, round(s.heal.Sub(s.cut)), bad, total)
		for _, r := range replicas {
			t.Logf("  %s", r.figures(s))
			sum = append(sum, r.summary(s))
		}
		sum = append(sum, fmt.Sprintf("%s/balancer: %d of %d 5xx", strings.SplitN(s.name, " (", 2)[0], bad, total))
	}
	rows := sim.Stats().Rows()
	tot := rows[len(rows)-1]
	t.Logf("simulator: %d jobs, %d attempts, %d accepted, %d denied, %d refused, %d failed, %d retried, %d gave up; p50 %.1f ms, p99 %.1f ms, max %.0f ms",
		sim.Jobs(), tot.Sent, tot.Accepted, tot.Denied, tot.Refused, tot.Failed, tot.Retried, tot.GaveUp, tot.P50, tot.P99, tot.Max)
	t.Logf("partition summary: %s; moves: in-1 %d, in-2 %d", strings.Join(sum, "; "), in1.moves.Load(), in2.moves.Load())

	// The end state.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	v, err := simulator.Verify(ctx, d.js, sim.Record(), simulator.VerifyOptions{Settle: 2 * time.Minute})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var out strings.Builder
	simulator.WriteChecks(&out, v)
	t.Logf("checks (settled after %s):\n%s", v.Settled.Round(time.Second), out.String())
	for _, name := range []string{simulator.CheckIngress, simulator.CheckOverdraft, simulator.CheckBalance, simulator.CheckJobs} {
		if c, ok := v.Check(name); !ok || c.Status != simulator.Pass {
			t.Errorf("%s: %s %s %s", name, c.Status, c.Detail, strings.Join(c.Problems, "; "))
		}
	}
}

// partDeployment is the deployment of the partition proof: its nodes and
// the replicas wired as the sdevents processes are.
type partDeployment struct {
	*deployment
	nodes []*partNode
}

// leaderOf returns the index of the node the cluster names as stream's
// leader.
func (d *partDeployment) leaderOf(stream string) int {
	d.t.Helper()
	var leader int
	natstest.Eventually(d.t, 30*time.Second, "a leader of "+stream, func() bool {
		ctx, cancel := context.WithTimeout(d.t.Context(), 2*time.Second)
		defer cancel()
		s, err := d.js.Stream(ctx, stream)
		if err != nil || s.CachedInfo().Cluster == nil {
			return false
		}
		for i, n := range d.nodes {
			if n.id == s.CachedInfo().Cluster.Leader {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// nodeAt names the node whose client URL is u.
func (d *partDeployment) nodeAt(u string) string {
	for _, n := range d.nodes {
		if n.url() == u {
			return n.id
		}
	}
	return u
}

// without returns urls without the i-th.
func without(urls []string, i int) []string {
	return append(append([]string{}, urls[:i]...), urls[i+1:]...)
}

// guarded is a service replica's connection as `sdevents` opens one: a
// mover and the readiness of the streams the replica writes, both running
// until the test ends.
type guarded struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	h     *jshealth.Health
	moves atomic.Int64
}

// connect opens a replica's connection to urls (in this order when ordered;
// pinned: no discovered servers either) and runs its mover.
func (d *partDeployment) connect(name string, urls []string, pinned bool, writes ...string) *guarded {
	d.t.Helper()
	g := &guarded{}
	m := jshealth.NewMover(jshealth.Dial(), jshealth.MoverOptions{OnMove: func(from, to string) {
		g.moves.Add(1)
		d.t.Logf("%s %s: moved its connection from %s to %s", time.Now().Format("15:04:05.0"), name, d.nodeAt(from), d.nodeAt(to))
	}})
	opts := []nats.Option{m.Option(), nats.DontRandomize()}
	if pinned {
		opts = append(opts, nats.IgnoreDiscoveredServers())
	}
	g.nc, g.js = natstest.Connect(d.t, strings.Join(urls, ","), opts...)
	g.h = jshealth.New(g.js, jshealth.Options{Streams: writes})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx, g.h) }()
	d.t.Cleanup(func() { cancel(); <-done })
	return g
}

func (d *partDeployment) startQuota(name string, urls []string) *quota.Service {
	d.t.Helper()
	g := d.connect(name, urls, false, contract.StreamQuota, contract.StreamQuotaTimers)
	svc, err := quota.New(d.t.Context(), d.quota, g.js, prometheus.NewRegistry())
	if err != nil {
		d.t.Fatal(err)
	}
	startReplica(d.t, name, g.nc, svc.Run)
	return svc
}

func (d *partDeployment) startAggregator(name string, urls []string) {
	d.t.Helper()
	g := d.connect(name, urls, false, contract.StreamJobs, "KV_"+contract.BucketAggregatorState, contract.StreamAggregatorTimers)
	svc, err := aggregator.New(d.t.Context(), d.aggregator, g.js, prometheus.NewRegistry())
	if err != nil {
		d.t.Fatal(err)
	}
	startReplica(d.t, name, g.nc, svc.Run)
}

// partReplica is an ingress replica on real HTTP with its readiness, and
// what was seen of it: its /readyz and direct probe callbacks, in time.
type partReplica struct {
	*guarded
	name string
	base string

	ready   atomic.Bool // last /readyz answer was 200
	storing atomic.Bool // last probe callback was stored

	mu         sync.Mutex
	readiness  []sample
	probes     []sample
	lastProbe  time.Time
	stopProbes context.CancelFunc
	probesDone chan struct{}
}

// sample is one observation: asked at at, answered at done, good or not.
type sample struct {
	at, done time.Time
	ok       bool
}

// serveIngress runs an ingress replica, with the quota replica admin's
// operator API beside it, until the test ends. /readyz is the process's:
// the ingress's own readiness and the streams it writes.
func (d *partDeployment) serveIngress(name string, urls []string, pinned bool, admin *quota.Service) *partReplica {
	d.t.Helper()
	g := d.connect(name, urls, pinned, contract.StreamIngress)
	reg := prometheus.NewRegistry()
	srv := httpserver.New(zerolog.New(io.Discard), reg)
	in, err := ingress.New(d.t.Context(), d.ingress, g.js, reg)
	if err != nil {
		d.t.Fatal(err)
	}
	in.Routes(srv.Echo())
	admin.Routes(srv.Echo())
	srv.AddReadyCheck("ingress", in.Ready)
	srv.AddReadyCheck("jetstream", g.h.Ready)
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
	r := &partReplica{guarded: g, name: name, base: "http://" + srv.Addr()}
	natstest.Eventually(d.t, 30*time.Second, name+" ready", func() bool { return r.pollReady(http.DefaultClient) })
	return r
}

// pollReady asks /readyz once and records the answer.
func (r *partReplica) pollReady(client *http.Client) bool {
	at, ok := time.Now(), false
	if resp, err := client.Get(r.base + "/readyz"); err == nil {
		resp.Body.Close()
		ok = resp.StatusCode == http.StatusOK
	}
	r.ready.Store(ok)
	r.mu.Lock()
	r.readiness = append(r.readiness, sample{at, time.Now(), ok})
	r.mu.Unlock()
	return ok
}

// startProbe sends a signed callback of an unknown bizType (stored like an
// asynchronous event, consumed by no service) straight to the replica every
// 250 ms, each with its own invokeId, without waiting for the previous
// answer (at most 32 in flight), and records whether it was stored.
func (r *partReplica) startProbe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r.stopProbes, r.probesDone = cancel, make(chan struct{})
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(r.probesDone)
		var wg sync.WaitGroup
		defer wg.Wait()
		slots := make(chan struct{}, 32)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case slots <- struct{}{}:
			default:
				continue
			}
			wg.Go(func() {
				defer func() { <-slots }()
				at := time.Now()
				code, err := probeCallback(ctx, client, r.base, fmt.Sprintf("%s-probe-%05d", r.name, i))
				if ctx.Err() != nil {
					return
				}
				ok := err == nil && code == http.StatusOK
				r.mu.Lock()
				defer r.mu.Unlock()
				r.probes = append(r.probes, sample{at, time.Now(), ok})
				if at.After(r.lastProbe) {
					r.lastProbe = at
					r.storing.Store(ok)
				}
			})
		}
	}()
	t.Cleanup(r.stopProbe)
}

// Runs of probe callbacks (one every 250 ms): a steady stretch between
// scenarios, and the service of the majority a partition lasts through.
const (
	steadyProbes = 8  // two seconds' worth
	faultProbes  = 40 // ten seconds' worth
)

// holdUntil keeps a fault in place until cond holds, failing t when it
// does not within a minute: the fault did not have the effect it is there
// for.
func holdUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	natstest.Eventually(t, time.Minute, what, cond)
}

// probesSince counts r's probe callbacks asked at or after since that were
// stored and that were refused.
func (r *partReplica) probesSince(since time.Time) (stored, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.probes {
		switch {
		case p.at.Before(since):
		case p.ok:
			stored++
		default:
			refused++
		}
	}
	return stored, refused
}

// firstUnready is when r's readiness was first asked, at or after since,
// and answered not ready; zero when it has not been.
func (r *partReplica) firstUnready(since time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.readiness {
		if !s.ok && !s.at.Before(since) {
			return s.at
		}
	}
	return time.Time{}
}

func (r *partReplica) stopProbe() {
	if r.stopProbes != nil {
		r.stopProbes()
		<-r.probesDone
	}
}

// probeCallback POSTs one signed callback of bizType partitionProbe.
func probeCallback(ctx context.Context, client *http.Client, base, invokeID string) (int, error) {
	const token = "partition-probe"
	enc, err := callback.EncryptToken(token, platformKey.SK, nil)
	if err != nil {
		return 0, err
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	body := []byte(`{"probe":true}`)
	par := callback.Params{APIID: "api-probe", BizType: "partitionProbe", InvokeID: invokeID, APIToken: enc,
		Nonce: hex.EncodeToString(nonce[:]), Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
	par.Sign = callback.Sign(platformKey, par, body, token)
	q := url.Values{"apiId": {par.APIID}, "bizType": {par.BizType}, "invokeId": {par.InvokeID}, "apiToken": {par.APIToken},
		"sign": {par.Sign}, "nonce": {par.Nonce}, "timestamp": {par.Timestamp}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/callbacks/default?"+q.Encode(), strings.NewReader(string(body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// scenario is one fault: the links were cut at cut and all back at heal;
// end is when every replica was ready and storing again.
type scenario struct {
	name           string
	cut, heal, end time.Time
}

// window returns the samples taken within [from, to), in time order.
func window(ss []sample, from, to time.Time) []sample {
	var out []sample
	for _, s := range ss {
		if !s.at.Before(from) && s.at.Before(to) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b sample) int { return a.at.Compare(b.at) })
	return out
}

// outage is what a replica's samples show of one scenario, by the time each
// was asked: when they first turned bad after the cut, the longest bad
// stretch (from the first bad one asked to the next good one asked), how
// many were bad, and when the last good stretch began (the answer of its
// first sample, relative to the heal; negative when before it).
type outage struct {
	firstBad    time.Duration // after the cut; -1: never bad
	longest     time.Duration
	bad, total  int
	goodForGood time.Duration
}

func measure(ss []sample, s *scenario) outage {
	w := window(ss, s.cut, s.end)
	o := outage{firstBad: -1, total: len(w)}
	var badSince time.Time
	var goodSince *sample
	for _, x := range w {
		if x.ok {
			if !badSince.IsZero() {
				o.longest = max(o.longest, x.at.Sub(badSince))
				badSince = time.Time{}
			}
			if goodSince == nil {
				goodSince = &x
			}
			continue
		}
		o.bad++
		if o.firstBad < 0 {
			o.firstBad = x.at.Sub(s.cut)
		}
		if badSince.IsZero() {
			badSince = x.at
		}
		goodSince = nil
	}
	if !badSince.IsZero() {
		o.longest = max(o.longest, s.end.Sub(badSince))
	}
	if o.bad > 0 && goodSince != nil {
		o.goodForGood = goodSince.done.Sub(s.heal)
	}
	return o
}

func (o outage) String() string {
	if o.firstBad < 0 {
		return fmt.Sprintf("never (%d samples)", o.total)
	}
	return fmt.Sprintf("first %s after the cut, longest %s, %d of %d samples, good for good %s",
		round(o.firstBad), round(o.longest), o.bad, o.total, o.recovery())
}

// recovery says when the samples were good for good, against the heal.
func (o outage) recovery() string {
	if o.goodForGood < 0 {
		return round(-o.goodForGood) + " before the heal"
	}
	return round(o.goodForGood) + " after the heal"
}

func round(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }

// figures is one replica's line of a scenario.
func (r *partReplica) figures(s *scenario) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%s: not ready: %s | probes refused: %s", r.name, measure(r.readiness, s), measure(r.probes, s))
}

// summary is the replica's short figure of a scenario for the summary line.
func (r *partReplica) summary(s *scenario) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	red, refused := measure(r.readiness, s), measure(r.probes, s)
	name := strings.SplitN(s.name, " (", 2)[0]
	var parts []string
	if red.firstBad >= 0 {
		parts = append(parts, "red after "+round(red.firstBad), "ready "+red.recovery())
	}
	if refused.firstBad >= 0 {
		parts = append(parts, "503 for "+round(refused.longest), "storing "+refused.recovery())
	}
	if len(parts) == 0 {
		parts = append(parts, "unaffected")
	}
	return fmt.Sprintf("%s/%s: %s", name, r.name, strings.Join(parts, ", "))
}

// balancer is the load balancer in front of the ingress replicas, as a
// Kubernetes Service is: round robin over the replicas whose /readyz
// answered 200 at the last poll (every 200 ms), over all of them when none
// did.
type balancer struct {
	base     string
	replicas []*partReplica
	next     atomic.Uint64

	mu      sync.Mutex
	answers []sample // every answer the platform got: ok unless 5xx or none
}

// refused counts the answers within s that were 5xx or none, and all.
func (b *balancer) refused(s *scenario) (bad, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := window(b.answers, s.cut, s.end)
	for _, a := range w {
		if !a.ok {
			bad++
		}
	}
	return bad, len(w)
}

func (b *balancer) record(ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.answers = append(b.answers, sample{now, now, ok})
}

func startBalancer(t *testing.T, replicas []*partReplica) *balancer {
	t.Helper()
	b := &balancer{replicas: replicas}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u, _ := url.Parse(b.pick().base)
			pr.SetURL(u)
		},
		ModifyResponse: func(resp *http.Response) error {
			b.record(resp.StatusCode < 500)
			return nil
		},
		// A replica's transport error is answered 502: the platform retries.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			b.record(false)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		client := &http.Client{Timeout: time.Second}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var wg sync.WaitGroup
			for _, r := range replicas {
				wg.Go(func() { r.pollReady(client) })
			}
			wg.Wait()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-polled
		_ = srv.Close()
	})
	b.base = "http://" + ln.Addr().String()
	return b
}

// pick returns the next ready replica, or the next of all when none is.
func (b *balancer) pick() *partReplica {
	n := uint64(len(b.replicas))
	start := b.next.Add(1)
	for i := range n {
		if r := b.replicas[(start+i)%n]; r.ready.Load() {
			return r
		}
	}
	return b.replicas[start%n]
}
