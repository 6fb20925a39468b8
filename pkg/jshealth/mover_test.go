package jshealth_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/jshealth"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// moves records what OnMove reported.
type moves struct {
	mu   sync.Mutex
	from []string
	to   []string
}

func (m *moves) add(from, to string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.from, m.to = append(m.from, from), append(m.to, to)
}

func (m *moves) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.from)
}

// runMover runs m on h until the test ends.
func runMover(t *testing.T, m *jshealth.Mover, h *jshealth.Health) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mover: %v", err)
		}
	})
}

func host(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Host
}

// TestMoverLeavesACutOffServer: a connection that knows every node is on
// the node that gets cut off (the stream's leader, or a follower). The
// mover sees the checks fail, finds a node of the majority through which
// they pass, and moves the connection there, while the node is still cut
// off; the connection is writable again.
func TestMoverLeavesACutOffServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		isLeader bool
	}{{"leader", true}, {"follower", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := natstest.StartCluster(t)
			_, js := natstest.Connect(t, c.URLs())
			createStream(t, js, 3)
			leader := c.StreamLeader(t, stream)
			cut := leader
			if !tc.isLeader {
				cut = c.Nodes[0]
				if cut == leader {
					cut = c.Nodes[1]
				}
			}
			// The node to cut first in the list, and no shuffling: the
			// connection starts there.
			urls := []string{cut.URL()}
			for _, n := range c.Nodes {
				if n != cut {
					urls = append(urls, n.URL())
				}
			}
			var mv moves
			m := jshealth.NewMover(jshealth.Dial(), jshealth.MoverOptions{OnMove: mv.add})
			nc, _ := natstest.Connect(t, strings.Join(urls, ","), nats.DontRandomize(), m.Option())
			if host(nc.ConnectedUrl()) != host(cut.URL()) {
				t.Fatalf("connected to %s, want %s", nc.ConnectedUrl(), cut.URL())
			}
			h := newHealth(t, nc, jshealth.Options{})
			natstest.Eventually(t, 30*time.Second, "writable before the cut", func() bool { return ready(h) == nil })
			runMover(t, m, h)

			c.Isolate(t, cut)
			natstest.Eventually(t, 60*time.Second, "the connection moved off the cut-off node and writable", func() bool {
				return nc.IsConnected() && host(nc.ConnectedUrl()) != host(cut.URL()) && ready(h) == nil
			})
			if mv.count() != 1 || host(mv.from[0]) != host(cut.URL()) || host(mv.to[0]) != host(nc.ConnectedUrl()) {
				t.Errorf("moves reported: from %v to %v; connected to %s", mv.from, mv.to, nc.ConnectedUrl())
			}
			c.Rejoin(t, cut)
		})
	}
}

// TestMoverStaysWithoutAWritableServer: every node is cut off from every
// other, so no server can write. The mover tries the other servers, finds
// none, and leaves the connection where it is; its rounds are spaced by at
// least MinBackoff, so a cluster down as a whole does not become a storm of
// connections. A connection that knows only its own server never tries.
func TestMoverStaysWithoutAWritableServer(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t)
	_, js := natstest.Connect(t, c.URLs())
	createStream(t, js, 3)

	var dials atomic.Int64
	counting := func(u string) (*nats.Conn, error) {
		dials.Add(1)
		return jshealth.Dial()(u)
	}
	const minBackoff = 300 * time.Millisecond
	var mv moves
	m := jshealth.NewMover(counting, jshealth.MoverOptions{Interval: 100 * time.Millisecond, MinBackoff: minBackoff, MaxBackoff: time.Second, OnMove: mv.add})
	nc, _ := natstest.Connect(t, c.URLs(), m.Option())
	h := newHealth(t, nc, jshealth.Options{MaxAge: time.Millisecond})
	natstest.Eventually(t, 30*time.Second, "writable before the cut", func() bool { return ready(h) == nil })

	var lonelyDials atomic.Int64
	lonely := jshealth.NewMover(func(u string) (*nats.Conn, error) { lonelyDials.Add(1); return jshealth.Dial()(u) },
		jshealth.MoverOptions{Interval: 100 * time.Millisecond, MinBackoff: minBackoff})
	lonelyNC := pinned(t, c.Nodes[0])
	lonelyH := newHealth(t, lonelyNC, jshealth.Options{MaxAge: time.Millisecond})
	natstest.Eventually(t, 30*time.Second, "writable before the cut", func() bool { return ready(lonelyH) == nil })

	for _, n := range c.Nodes {
		c.Isolate(t, n)
	}
	// A leader cut off less than Fresh ago still passes the check: start
	// once every node fails it.
	for _, n := range c.Nodes {
		v := newHealth(t, pinned(t, n), jshealth.Options{MaxAge: time.Millisecond})
		natstest.Eventually(t, 30*time.Second, n.Srv.Name()+" not writable", func() bool { return notWritable(ready(v)) })
	}
	start := time.Now()
	runMover(t, m, h)
	runMover(t, lonely, lonelyH)
	// Two nodes tried per round: wait for three rounds.
	natstest.Eventually(t, 60*time.Second, "three rounds of tries", func() bool { return dials.Load() >= 6 })
	elapsed := time.Since(start)
	if mv.count() != 0 || nc.Stats().Reconnects != 0 {
		t.Errorf("moved %d times (%d reconnects) with no writable server", mv.count(), nc.Stats().Reconnects)
	}
	if rounds, most := (dials.Load()+1)/2, int64(elapsed/minBackoff)+1; rounds > most {
		t.Errorf("%d rounds of tries in %s: more than one per %s", rounds, elapsed, minBackoff)
	}
	if notWritable(ready(lonelyH)) && lonelyDials.Load() != 0 {
		t.Errorf("a connection that knows one server dialled %d others", lonelyDials.Load())
	}
	for _, n := range c.Nodes {
		c.Rejoin(t, n)
	}
}
