package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/proctest"
	"github.com/sdevents/sdevents/streams"
)

// procCluster is a three-node JetStream cluster of nats-server processes on
// loopback, built from the nats-server module the workspace embeds, so that
// a node can die the hard way: SIGKILL, no shutdown, nothing flushed.
type procCluster struct {
	t     *testing.T
	nodes []*procNode
}

// procNode is one nats-server process with its fixed ports.
type procNode struct {
	*proctest.Proc
	t       *testing.T
	name    string
	client  int
	monitor int
}

// startProcCluster starts three nodes, each given every route, and waits
// until each answers on its monitoring port.
func startProcCluster(t *testing.T) *procCluster {
	t.Helper()
	bin := proctest.Build(t, "github.com/nats-io/nats-server/v2", "nats-server")
	c := &procCluster{t: t}
	ports := proctest.FreePorts(t, 9)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[6+i]))
	}
	dir := t.TempDir()
	for i := range 3 {
		n := &procNode{t: t, name: fmt.Sprintf("p%d", i+1), client: ports[i], monitor: ports[3+i]}
		conf := filepath.Join(dir, n.name+".conf")
		err := os.WriteFile(conf, fmt.Appendf(nil, `server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
max_payload: 8MB
jetstream { store_dir: %q }
cluster {
  name: sdevents-crash
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n.name, n.client, n.monitor, filepath.Join(dir, n.name), ports[6+i], strings.Join(routes, ", ")), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		n.Proc = proctest.Start(t, bin, filepath.Join(dir, n.name+".log"), "-c", conf)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- %s log (tail) ---\n%s", n.name, n.Tail(25))
			}
		})
		n.waitUp()
		c.nodes = append(c.nodes, n)
	}
	return c
}

// waitUp waits until the node answers on its monitoring port.
func (n *procNode) waitUp() {
	n.t.Helper()
	natstest.Eventually(n.t, 30*time.Second, n.name+" answering on its monitoring port", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/varz", n.monitor))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (c *procCluster) urls() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.client))
	}
	return strings.Join(urls, ",")
}

// local is what node n itself stores of stream, read from its monitoring
// endpoint; false while the node cannot tell.
func (n *procNode) local(stream string) (server.StreamState, bool) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?acc=$G&streams=true", n.monitor))
	if err != nil {
		return server.StreamState{}, false
	}
	defer resp.Body.Close()
	var info server.JSInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return server.StreamState{}, false
	}
	for _, acc := range info.AccountDetails {
		for _, s := range acc.Streams {
			if s.Name == stream {
				return s.State, true
			}
		}
	}
	return server.StreamState{}, false
}

// streamLeader returns the node the cluster names as stream's leader.
func (c *procCluster) streamLeader(d *deployment, stream string) *procNode {
	c.t.Helper()
	var leader *procNode
	natstest.Eventually(c.t, 30*time.Second, "a leader of "+stream, func() bool {
		ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Second)
		defer cancel()
		s, err := d.js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		for _, n := range c.nodes {
			if n.name == info.Cluster.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// TestIngressAcrossLeaderCrash is TestIngressAcrossLeaderFailover with the
// INGRESS leader killed by SIGKILL instead of shut down: its file store is
// not flushed, its in-flight acknowledgements are lost on the wire. Every
// callback is still acknowledged in the end, stored exactly once, and the
// node that crashed recovers its store and catches up with every event.
func TestIngressAcrossLeaderCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server: not in -short")
	}
	t.Parallel()
	const (
		total    = 1500
		interval = 5 * time.Millisecond // 200 callbacks/s
	)
	c := startProcCluster(t)
	d := deployOn(t, c.urls())
	front := d.serveIngress(nil)
	p := newPlatform()
	load := newAsyncLoad(total, "crash", "user-crash")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	wait := load.run(ctx, p, front.base, interval)

	natstest.Eventually(t, 30*time.Second, "300 callbacks acknowledged", func() bool { return load.acked.Load() >= 300 })
	leader := c.streamLeader(d, streams.Ingress)
	ackedAtKill := load.acked.Load()
	killed := time.Now()
	leader.Kill()
	waitOrDiagnose(t, d, p, 45*time.Second, "200 more callbacks acknowledged after the leader died", func() bool {
		return load.acked.Load() >= ackedAtKill+200
	})
	next := c.streamLeader(d, streams.Ingress)
	if next == leader {
		t.Fatal("the killed node leads INGRESS")
	}
	leader.Restart()
	leader.waitUp()
	restarted := time.Since(killed)
	wait()
	load.checkDelivered(t)
	load.checkStoredOnce(t, d.js, "after the crash")

	// The crashed node recovered its store and caught up with the others.
	natstest.Eventually(t, 60*time.Second, fmt.Sprintf("every node storing the %d callbacks", total), func() bool {
		var last uint64
		for i, n := range c.nodes {
			st, ok := n.local(streams.Ingress)
			if !ok || st.Msgs != uint64(total) || (i > 0 && st.LastSeq != last) {
				return false
			}
			last = st.LastSeq
		}
		return true
	})
	var retried int
	for _, r := range load.results {
		if r.attempts > 1 {
			retried++
		}
	}
	t.Logf("%d callbacks; INGRESS leader %s killed after %d acks, %s leads now; restarted %s after the kill; %d callbacks needed retries",
		total, leader.name, ackedAtKill, next.name, restarted.Round(time.Millisecond), retried)
}
