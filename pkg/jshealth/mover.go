package jshealth

import (
	"context"
	"math/rand/v2"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Dialer opens a short-lived connection to one server, with the same
// credentials as the connection a Mover moves. Dial builds one.
type Dialer func(url string) (*nats.Conn, error)

// Dial returns a Dialer that connects with opts plus no reconnects, a
// one-second connect timeout and no discovered servers.
func Dial(opts ...nats.Option) Dialer {
	return func(u string) (*nats.Conn, error) {
		o := append(append([]nats.Option{}, opts...),
			nats.NoReconnect(), nats.Timeout(time.Second), nats.IgnoreDiscoveredServers())
		return nats.Connect(u, o...)
	}
}

// Defaults of MoverOptions.
const (
	DefaultInterval   = time.Second
	DefaultAfter      = 2
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 30 * time.Second
	// DefaultProbeFresh is stricter than DefaultFresh: a leader heard from
	// its replicas about every second, while one cut off moments ago still
	// passes the readiness check for DefaultFresh.
	DefaultProbeFresh = 1500 * time.Millisecond
)

// MoverOptions configures a Mover. Zero fields take the defaults.
type MoverOptions struct {
	// Interval is the pause between two checks of the connection.
	Interval time.Duration
	// After is the number of consecutive failed checks, while connected,
	// before the other servers are tried.
	After int
	// MinBackoff and MaxBackoff bound the pause between two rounds of
	// trying the other servers: it starts at MinBackoff and grows by half
	// after every round, up to MaxBackoff, so that a cluster that is down as
	// a whole costs one probe connection per server every MaxBackoff, not a
	// reconnect storm. It starts again from MinBackoff once the connection
	// has been healthy for MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Fresh is how recently the leader seen through another server must
	// have heard from a replica for it to count towards the quorum, before
	// the connection moves to that server.
	Fresh time.Duration
	// OnMove, when set, is called after the connection was told to move
	// from one server to another (URLs without credentials).
	OnMove func(from, to string)
}

func (o *MoverOptions) defaults() {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.After <= 0 {
		o.After = DefaultAfter
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.Fresh <= 0 {
		o.Fresh = DefaultProbeFresh
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
}

// Mover keeps a connection on a server through which the streams can be
// written. nats.go moves a connection only when it breaks; a server cut off
// from the rest of its cluster keeps its clients, so a Mover watches the
// Health checks instead: when they fail repeatedly while the connection is
// up and other servers are known, it tries each of them over a short-lived
// connection with the same check, and moves the connection
// (nats.Conn.ForceReconnect) to the first that passes. When none passes —
// the stream is electing a leader, or the whole cluster is down — the
// connection stays where it is. A leader cut off moments ago still looks
// healthy — it heard from its replicas a second ago — so a server passes
// only when its leader heard from a majority within MoverOptions.Fresh, a
// tighter bound than readiness's; a move that lands on such a node anyway
// is undone by the next round, after the backoff.
//
// Build it before connecting, and connect with Option, which lets it choose
// the server the reconnect goes to.
type Mover struct {
	dial Dialer
	opts MoverOptions
	// next is the host the next reconnect goes to, set just before a move
	// and taken by the first reconnect attempt.
	next atomic.Pointer[string]
}

// NewMover returns a Mover that probes other servers through dial.
func NewMover(dial Dialer, o MoverOptions) *Mover {
	o.defaults()
	return &Mover{dial: dial, opts: o}
}

// Option is the connect option the moved connection needs: it sends the
// reconnect that follows a move to the server the Mover chose. Reconnects
// for any other reason choose as nats.go does.
func (m *Mover) Option() nats.Option { return nats.ReconnectToServer(m.pick) }

func (m *Mover) pick(servers []nats.Server, _ nats.ServerInfo) (*nats.Server, time.Duration) {
	host := m.next.Swap(nil)
	if host == nil {
		return nil, 0
	}
	for i := range servers {
		if servers[i].URL != nil && servers[i].URL.Host == *host {
			return &servers[i], 0
		}
	}
	return nil, 0
}

// Run watches the connection h checks through until ctx ends, moving it as
// described on Mover. It returns nil when ctx ends. A connection whose only
// known server is its own never moves.
func (m *Mover) Run(ctx context.Context, h *Health) error {
	nc := h.nc
	tick := time.NewTicker(m.opts.Interval)
	defer tick.Stop()
	var (
		fails     int
		backoff   = m.opts.MinBackoff
		notBefore time.Time // no round of tries before this
		lastRound time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := h.Ready(ctx); err == nil || !nc.IsConnected() {
			// Healthy, or nats.go is already reconnecting on its own.
			fails = 0
			if err == nil && time.Since(lastRound) > m.opts.MaxBackoff {
				backoff = m.opts.MinBackoff
			}
			continue
		}
		if fails++; fails < m.opts.After || time.Now().Before(notBefore) {
			continue
		}
		lastRound = time.Now()
		notBefore = lastRound.Add(backoff)
		backoff = min(backoff*3/2, m.opts.MaxBackoff)
		from := nc.ConnectedUrlRedacted()
		to, ok := m.findWritable(ctx, nc, h)
		// Look again before leaving: an election may have ended meanwhile.
		if !ok || h.Check(ctx) == nil {
			continue
		}
		m.next.Store(&to.Host)
		if err := nc.ForceReconnect(); err != nil {
			m.next.Store(nil)
			continue
		}
		fails = 0
		if m.opts.OnMove != nil {
			m.opts.OnMove(from, redact(to))
		}
	}
}

// findWritable tries the servers nc knows other than its current one, in
// random order, and returns the first through which h's checks pass.
func (m *Mover) findWritable(ctx context.Context, nc *nats.Conn, h *Health) (*url.URL, bool) {
	current := hostOf(nc.ConnectedUrl())
	var others []*url.URL
	for _, s := range nc.Servers() {
		u, err := url.Parse(s)
		if err == nil && u.Host != "" && u.Host != current {
			others = append(others, u)
		}
	}
	rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	for _, u := range others {
		if ctx.Err() != nil {
			return nil, false
		}
		c, err := m.dial(u.String())
		if err != nil {
			continue
		}
		err = h.CheckVia(ctx, c, m.opts.Fresh)
		c.Close()
		if err == nil {
			return u, true
		}
	}
	return nil, false
}

func hostOf(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Host
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
