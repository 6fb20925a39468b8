// Package natstest starts real nats-servers with JetStream for tests: one node,
// or a three-node cluster on loopback. Every server stores in t.TempDir() and is
// shut down by t.Cleanup.
package natstest

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/proctest"
	"github.com/sdevents/sdevents/streams"
)

// Node is one running server.
type Node struct {
	t    testing.TB
	opts server.Options
	Srv  *server.Server
}

// baseOptions is a fresh copy of the options every test server starts from.
// Its client port is held for the test process (proctest.FreePorts), so a
// restart finds it free.
func baseOptions(t testing.TB, dir string) server.Options {
	return server.Options{
		Host:                  "127.0.0.1",
		Port:                  proctest.FreePorts(t, 1)[0],
		NoLog:                 true,
		NoSigs:                true,
		MaxControlLine:        4096,
		DisableShortFirstPing: true,
		JetStream:             true,
		StoreDir:              dir,
		MaxPayload:            8 << 20,
	}
}

// Start starts a single JetStream node.
func Start(t testing.TB) *Node {
	t.Helper()
	n := &Node{t: t, opts: baseOptions(t, t.TempDir())}
	n.start()
	t.Cleanup(n.Shutdown)
	return n
}

func (n *Node) start() {
	n.t.Helper()
	opts := n.opts
	s, err := server.NewServer(&opts)
	if err != nil {
		n.t.Fatalf("natstest: %v", err)
	}
	// A listener that cannot bind is reported only to the server's log, and
	// the server then never becomes ready: the log's fatal line ends the
	// wait with its reason.
	fatal := &fatalLog{}
	s.SetLoggerV2(fatal, false, false, false)
	s.Start()
	// A restarted cluster node recovers its streams and meets its routes
	// before it listens; with race detection on two loaded cores this took
	// more than 10 s at times. The bound is for a server that never comes
	// up, not a measure of how fast one does.
	for deadline := time.Now().Add(time.Minute); !s.ReadyForConnections(100 * time.Millisecond); {
		if msg := fatal.first(); msg != "" {
			s.Shutdown()
			n.t.Fatalf("natstest: server %s: %s", opts.ServerName, msg)
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			n.t.Fatalf("natstest: server %s not ready for connections after a minute", opts.ServerName)
		}
	}
	n.Srv = s
}

// fatalLog is a server logger that keeps the first fatal line and drops
// every other.
type fatalLog struct {
	mu  sync.Mutex
	msg string
}

func (l *fatalLog) Fatalf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msg == "" {
		l.msg = fmt.Sprintf(format, v...)
	}
}

func (l *fatalLog) first() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}

func (*fatalLog) Noticef(string, ...any) {}
func (*fatalLog) Warnf(string, ...any)   {}
func (*fatalLog) Errorf(string, ...any)  {}
func (*fatalLog) Debugf(string, ...any)  {}
func (*fatalLog) Tracef(string, ...any)  {}

// URL is the client URL.
func (n *Node) URL() string { return n.Srv.ClientURL() }

// Shutdown stops the node and waits for it; it may be called more than once.
func (n *Node) Shutdown() {
	if n.Srv != nil && n.Srv.Running() {
		n.Srv.Shutdown()
		n.Srv.WaitForShutdown()
	}
}

// Restart shuts the node down and starts it again on the same port and store.
func (n *Node) Restart() {
	n.t.Helper()
	n.Shutdown()
	n.start()
}

// Reload changes the running node's options as a configuration reload does
// (only options nats-server can reload), keeping them for restarts.
func (n *Node) Reload(change func(*server.Options)) {
	n.t.Helper()
	opts := n.opts
	change(&opts)
	if err := n.Srv.ReloadOptions(&opts); err != nil {
		n.t.Fatalf("natstest: reload: %v", err)
	}
	n.opts = opts
}

// The bounds of asynchronous publishes of the JetStream contexts of
// JetStream and Connect: those of the binary's.
const (
	AsyncAckTimeout = 10 * time.Second
	AsyncMaxPending = 32 << 10
)

// Connect returns a connection to url that reconnects forever and is closed at
// cleanup, with its JetStream context (JetStream).
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, JetStream(t, nc)
}

// JetStream returns the JetStream context of nc made as the binary makes a
// service's (cmd/sdevents, newJetStream): at most AsyncMaxPending
// asynchronous publishes awaiting their ack, each for at most
// AsyncAckTimeout.
func JetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(AsyncAckTimeout), jetstream.WithPublishAsyncMaxPending(AsyncMaxPending))
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return js
}

// ApplyStreams applies the project's stream definitions with the given replicas.
func ApplyStreams(t testing.TB, js jetstream.JetStream, replicas int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	// A fresh cluster may still be electing, and a request sent before it
	// has a leader may go unanswered: each attempt has its own timeout, and
	// attempts go on until the deadline.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := streams.ApplyEmbedded(ctx, js, replicas)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: apply streams: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Cluster is a three-node JetStream cluster on loopback.
type Cluster struct {
	Nodes []*Node
	// routes are the nodes' route URLs, by index; cut holds the isolated
	// nodes.
	routes []string
	cut    map[*Node]bool
}

// StartCluster starts three clustered JetStream nodes, each given every route,
// and waits for a meta leader.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	const size = 3
	ports := proctest.FreePorts(t, size)
	routes := make([]string, size)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	c := &Cluster{routes: routes, cut: map[*Node]bool{}}
	for i := range size {
		o := baseOptions(t, t.TempDir())
		o.ServerName = fmt.Sprintf("n%d", i+1)
		o.Cluster.Name = "sdevents-test"
		o.Cluster.Host = "127.0.0.1"
		o.Cluster.Port = ports[i]
		o.Routes = sortedRoutes(routes)
		n := &Node{t: t, opts: o}
		n.start()
		t.Cleanup(n.Shutdown)
		c.Nodes = append(c.Nodes, n)
	}
	c.WaitMetaLeader(t)
	return c
}

// Isolate cuts node n off from the other nodes, as a network partition
// would, while its clients stay connected to it: every node reloads its
// routes without those between n and the others, so the route connections
// close and are not dialled again. Rejoin undoes it. Unlike a partition the
// connections close at once rather than going silent; what the nodes'
// JetStream sees is the same — no word from the other side.
func (c *Cluster) Isolate(t testing.TB, n *Node) {
	t.Helper()
	c.cut[n] = true
	c.applyRoutes(t)
}

// Rejoin gives an isolated node its routes back.
func (c *Cluster) Rejoin(t testing.TB, n *Node) {
	t.Helper()
	delete(c.cut, n)
	c.applyRoutes(t)
}

// applyRoutes reloads every running node with the routes the cuts allow: an
// isolated node has none, the others every route but those to isolated
// nodes.
func (c *Cluster) applyRoutes(t testing.TB) {
	t.Helper()
	for _, n := range c.Nodes {
		var keep []string
		if !c.cut[n] {
			for j, r := range c.routes {
				if !c.cut[c.Nodes[j]] {
					keep = append(keep, r)
				}
			}
		}
		routes := sortedRoutes(keep)
		if n.Srv == nil || !n.Srv.Running() {
			n.opts.Routes = routes
			continue
		}
		n.Reload(func(o *server.Options) { o.Routes = routes })
	}
}

// sortedRoutes parses route URLs in the order nats-server sorts them when
// it compares options on a reload: it sorts the running options' slice in
// place, which would race with its own route goroutines reading it unless
// the slice is already in order.
func sortedRoutes(routes []string) []*url.URL {
	if len(routes) == 0 {
		return nil
	}
	urls := server.RoutesFromStr(strings.Join(routes, ","))
	slices.SortFunc(urls, func(a, b *url.URL) int { return strings.Compare(a.String(), b.String()) })
	return urls
}

// URLs is every node's client URL, comma-separated, for nats.Connect.
func (c *Cluster) URLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port))
	}
	return strings.Join(urls, ",")
}

// WaitMetaLeader polls until some running node knows the JetStream meta leader.
func (c *Cluster) WaitMetaLeader(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.Nodes {
			if n.Srv != nil && n.Srv.Running() && n.Srv.JetStreamIsLeader() {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("natstest: no meta leader")
}

// StreamLeader returns the node leading stream.
func (c *Cluster) StreamLeader(t testing.TB, stream string) *Node {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.Nodes {
			if n.Srv != nil && n.Srv.Running() && n.Srv.JetStreamIsStreamLeader("$G", stream) {
				return n
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("natstest: no leader for stream %s", stream)
	return nil
}

// Eventually polls cond every 20 ms until it is true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
