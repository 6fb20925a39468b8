package httpserver

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// connLimiter is a net.Listener that keeps at most max connections open.
//
// At the cap, a new connection takes the place of the connection that holds
// its slot for the least: the longest-idle keep-alive connection (a server
// may close those at any time; clients retry on a fresh one), else the oldest
// connection that has not sent a complete request header within
// NewConnGrace. When every open connection is serving a request, or is newer
// than that, the new connection is refused: closed at once, and counted.
//
// Accept passes the errors of the wrapped listener through unchanged, so
// http.Server keeps its back-off on temporary errors such as EMFILE and
// never stops accepting because of them.
type connLimiter struct {
	net.Listener
	max   int
	grace time.Duration
	now   func() time.Time

	mu    sync.Mutex
	conns map[*limitedConn]struct{}

	open    prometheus.Gauge
	refused prometheus.Counter
	evicted *prometheus.CounterVec
}

// limitedConn is a connection of a connLimiter; its Close frees its slot.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
	// state and since are guarded by l.mu.
	state http.ConnState
	since time.Time
}

func newConnLimiter(ln net.Listener, max int, reg prometheus.Registerer) *connLimiter {
	l := &connLimiter{
		Listener: ln, max: max, grace: NewConnGrace, now: time.Now,
		conns: map[*limitedConn]struct{}{},
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sdevents", Subsystem: "http", Name: "connections_open",
			Help: "HTTP connections open on the listener.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "http", Name: "connections_refused_total",
			Help: "HTTP connections closed on accept because the listener was at its cap and no connection could give way.",
		}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "http", Name: "connections_evicted_total",
			Help: "HTTP connections closed at the cap to make room for a new one, by state: idle (keep-alive) or new (no complete request header in time).",
		}, []string{"state"}),
	}
	reg.MustRegister(l.open, l.refused, l.evicted)
	return l
}

// Accept returns the next connection that gets a slot. It blocks until one
// arrives; errors are the wrapped listener's.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
	}
}

// admit gives c a slot, closing a connection that gives way if needed, or
// closes c and returns nil.
func (l *connLimiter) admit(c net.Conn) *limitedConn {
	now := l.now()
	l.mu.Lock()
	var victim *limitedConn
	var victimState string
	if len(l.conns) >= l.max {
		victim = l.victimLocked(now)
		if victim == nil {
			l.mu.Unlock()
			l.refused.Inc()
			_ = c.Close()
			return nil
		}
		l.removeLocked(victim)
		victimState = "new"
		if victim.state == http.StateIdle {
			victimState = "idle"
		}
	}
	lc := &limitedConn{Conn: c, l: l, state: http.StateNew, since: now}
	l.conns[lc] = struct{}{}
	l.open.Set(float64(len(l.conns)))
	l.mu.Unlock()
	if victim != nil {
		l.evicted.WithLabelValues(victimState).Inc()
		victim.once.Do(func() { _ = victim.Conn.Close() })
	}
	return lc
}

// victimLocked picks the connection that gives way: the longest-idle
// keep-alive one, else the oldest that is still without a complete request
// header after the grace period.
func (l *connLimiter) victimLocked(now time.Time) *limitedConn {
	var idle, slow *limitedConn
	for c := range l.conns {
		switch c.state {
		case http.StateIdle:
			if idle == nil || c.since.Before(idle.since) {
				idle = c
			}
		case http.StateNew:
			if now.Sub(c.since) >= l.grace && (slow == nil || c.since.Before(slow.since)) {
				slow = c
			}
		}
	}
	if idle != nil {
		return idle
	}
	return slow
}

func (l *connLimiter) removeLocked(c *limitedConn) {
	if _, ok := l.conns[c]; ok {
		delete(l.conns, c)
		l.open.Set(float64(len(l.conns)))
	}
}

// connState is the http.Server's ConnState hook: it records when each
// connection became new, active, idle or hijacked.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, open := l.conns[lc]; open && lc.state != st {
		lc.state, lc.since = st, l.now()
	}
}

// Close closes the connection and frees its slot; it may be called more
// than once.
func (c *limitedConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.l.mu.Lock()
		c.l.removeLocked(c)
		c.l.mu.Unlock()
	})
	return err
}
