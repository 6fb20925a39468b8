package jshealth_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/jshealth"
	"github.com/sdevents/sdevents/pkg/natstest"
)

const stream = "HEALTH"

// createStream creates the test stream with the given replicas, retrying
// while a fresh cluster elects its meta leader, and waits for its leader.
func createStream(t *testing.T, js jetstream.JetStream, replicas int) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, "the stream created", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"health.>"}, Replicas: replicas})
		return err == nil || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse)
	})
}

// pinned is a connection to one node only, as a client whose server list
// names that node alone.
func pinned(t *testing.T, n *natstest.Node) *nats.Conn {
	t.Helper()
	nc, _ := natstest.Connect(t, n.URL(), nats.IgnoreDiscoveredServers())
	return nc
}

func newHealth(t *testing.T, nc *nats.Conn, o jshealth.Options) *jshealth.Health {
	t.Helper()
	if o.Streams == nil {
		o.Streams = []string{stream}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return jshealth.New(js, o)
}

func ready(h *jshealth.Health) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.Ready(ctx)
}

// notWritable: the failure of a check on the minority side.
func notWritable(err error) bool {
	return errors.Is(err, jshealth.ErrNoLeader) || errors.Is(err, jshealth.ErrNoQuorum)
}

// TestReadyOnASingleServer: a server without clustering passes once it
// answers; a stream that does not exist fails with ErrStreamNotFound; no
// streams always passes.
func TestReadyOnASingleServer(t *testing.T) {
	t.Parallel()
	n := natstest.Start(t)
	nc, js := natstest.Connect(t, n.URL())
	createStream(t, js, 1)
	if err := ready(newHealth(t, nc, jshealth.Options{})); err != nil {
		t.Errorf("R1 stream on a single server: %v", err)
	}
	err := ready(newHealth(t, nc, jshealth.Options{Streams: []string{stream, "MISSING"}}))
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("missing stream: %v, want ErrStreamNotFound", err)
	}
	if err := ready(newHealth(t, nc, jshealth.Options{Streams: []string{}})); err != nil {
		t.Errorf("no streams: %v", err)
	}
}

// TestReadyTellsTheMinorityApart cuts one node of a three-node cluster off
// from the others while its clients stay connected to it — the node leading
// the stream, or a follower. Through that node the check fails (the cut-off
// leader has heard from no replica; a cut-off follower reaches no leader),
// although the node still answers stream info requests from its own stale
// state, which is all the old readiness asked. Through the other two nodes
// the check passes again once they have a leader, and through every node
// once the node rejoins.
func TestReadyTellsTheMinorityApart(t *testing.T) {
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
			type view struct {
				node  *natstest.Node
				js    jetstream.JetStream
				h     *jshealth.Health
				flips *flips
			}
			var views []view
			var minority view
			for _, n := range c.Nodes {
				nc := pinned(t, n)
				js, _ := jetstream.New(nc)
				f := &flips{}
				v := view{n, js, newHealth(t, nc, jshealth.Options{MaxAge: time.Millisecond, OnChange: f.add}), f}
				views = append(views, v)
				if n == cut {
					minority = v
				}
			}
			for _, v := range views {
				natstest.Eventually(t, 30*time.Second, v.node.Srv.Name()+" writable before the cut", func() bool { return ready(v.h) == nil })
			}

			c.Isolate(t, cut)
			natstest.Eventually(t, 30*time.Second, "the cut-off node not writable while it still answers stream info", func() bool {
				if !notWritable(ready(minority.h)) {
					return false
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_, err := minority.js.Stream(ctx, stream)
				return err == nil
			})
			if !minority.flips.lastWas(notWritable) {
				t.Error("OnChange did not report the cut")
			}
			for _, v := range views {
				if v.node != cut {
					natstest.Eventually(t, 30*time.Second, v.node.Srv.Name()+" (majority) writable", func() bool { return ready(v.h) == nil })
				}
			}
			if err := ready(minority.h); !notWritable(err) {
				t.Errorf("cut-off node while the majority is writable: %v", err)
			}

			c.Rejoin(t, cut)
			for _, v := range views {
				natstest.Eventually(t, 30*time.Second, v.node.Srv.Name()+" writable after the rejoin", func() bool { return ready(v.h) == nil })
			}
			if !minority.flips.lastWas(func(err error) bool { return err == nil }) {
				t.Error("OnChange did not report the rejoin")
			}
		})
	}
}

// flips records what OnChange reported.
type flips struct {
	mu   sync.Mutex
	errs []error
}

func (f *flips) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

// lastWas reports whether OnChange was called and its last report passes
// want.
func (f *flips) lastWas(want func(error) bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.errs) > 0 && want(f.errs[len(f.errs)-1])
}

// TestReadyReusesAResult: within MaxAge, any number of Ready calls —
// concurrent or not — cost one stream info request; Check always asks.
func TestReadyReusesAResult(t *testing.T) {
	t.Parallel()
	n := natstest.Start(t)
	nc, js := natstest.Connect(t, n.URL())
	createStream(t, js, 1)
	watch, _ := natstest.Connect(t, n.URL())
	requests, err := watch.SubscribeSync("$JS.API.STREAM.INFO." + stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	h := newHealth(t, nc, jshealth.Options{MaxAge: time.Hour})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := ready(h); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for range 5 {
		if err := ready(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A round trip on the watching connection delivers what the server
	// already sent it: both requests were answered, so they were routed.
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := requests.Pending(); got != 2 {
		t.Errorf("%d stream info requests for 25 Ready calls and one Check, want 2", got)
	}
}

// TestReadyHonoursTheCallersContext: a caller whose context ends gets its
// error at once, and the check it started still completes for the others.
func TestReadyHonoursTheCallersContext(t *testing.T) {
	t.Parallel()
	n := natstest.Start(t)
	nc, js := natstest.Connect(t, n.URL())
	createStream(t, js, 1)
	h := newHealth(t, nc, jshealth.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Ready(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ready with an ended context: %v", err)
	}
	if err := ready(h); err != nil {
		t.Errorf("Ready after: %v", err)
	}
}
