// Package jshealth tells whether a process can store in JetStream now, and
// moves a NATS connection off a server through which it cannot.
//
// A connected client and an answered stream info request prove little in a
// cluster: a node cut off from the others keeps its clients, keeps naming
// itself the stream leader until its Raft group notices the lost quorum
// (about 10 s), and then answers stream info from its own stale state as a
// leaderless member. Writes through it are never acknowledged meanwhile.
//
// Health therefore asks, for every stream the process writes, the stream's
// leader itself (a JetStream stream info request with a short deadline, which
// only the leader answers while the group has one) and looks at its answer:
// the leader must have heard from enough replicas, recently, to make a
// majority with itself. Mover uses the same check to take a connection off a
// server that fails it while another known server passes it.
//
// The package never logs; it reports changes through callbacks.
package jshealth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Sentinels of a failed check. Both mean that a write through the
// connection would not be acknowledged now: report not ready and retry
// later; a Mover may take the connection to another server.
var (
	// ErrNoLeader: no stream leader answered within the deadline, or the
	// replica that answered knows of no leader (an election is under way,
	// or the connection's server is cut off from the majority).
	ErrNoLeader = errors.New("jetstream: no stream leader")
	// ErrNoQuorum: the stream's leader answered but has not heard recently
	// from enough replicas to make a majority: it is cut off or they are
	// down, and it will step down.
	ErrNoQuorum = errors.New("jetstream: stream leader without quorum")
)

// errCodeClusterNotAvailable is JetStream's "JetStream system temporarily
// unavailable": the answering server's JetStream has no meta leader, as on a
// server cut off from the majority.
const errCodeClusterNotAvailable jetstream.ErrorCode = 10008

// Defaults of Options.
const (
	// DefaultTimeout bounds one check. The leader answers a stream info
	// request in milliseconds; a second covers a loaded machine.
	DefaultTimeout = time.Second
	// DefaultFresh: a replica counts towards the quorum when the leader
	// heard from it this recently. Raft heartbeats every second and every
	// replica answers each one, so a reachable replica is never more than
	// about a second old.
	DefaultFresh = 3 * time.Second
	// DefaultMaxAge is how long Ready reuses a result.
	DefaultMaxAge = time.Second
)

// Options configures a Health. Zero fields take the defaults.
type Options struct {
	// Streams are the streams the process writes (a KV bucket is the
	// stream KV_<bucket>). No streams: always ready.
	Streams []string
	// Timeout bounds one check of all the streams.
	Timeout time.Duration
	// Fresh is how recently the leader must have heard from a replica for
	// it to count towards the quorum.
	Fresh time.Duration
	// MaxAge is how long Ready reuses a result, so that frequent probes
	// cost one check per MaxAge.
	MaxAge time.Duration
	// OnChange, when set, is called after a check whose outcome differs
	// from the previous one (and after the first): err is nil when the
	// streams became writable, the failure otherwise. Calls never overlap;
	// each runs before the Ready calls waiting for its check return: keep
	// it short.
	OnChange func(err error)
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Fresh <= 0 {
		o.Fresh = DefaultFresh
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
}

// Health tells whether the streams of Options can be written through one
// connection now. It is safe for concurrent use.
type Health struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options

	mu      sync.Mutex
	at      time.Time     // when the cached result was taken
	err     error         // the cached result
	checked bool          // a result exists (for OnChange)
	running chan struct{} // closed when the check in flight ends
}

// New returns a Health for the streams of o, checked through js, the
// JetStream context of the connection whose writes it answers for.
func New(js jetstream.JetStream, o Options) *Health {
	o.defaults()
	return &Health{nc: js.Conn(), js: js, opts: o}
}

// Ready reports whether every stream can be written now: nil, or an error
// wrapping ErrNoLeader, ErrNoQuorum, jetstream.ErrStreamNotFound or the
// request's failure, joined over the streams. A result younger than MaxAge
// is reused; otherwise Ready checks, and callers arriving meanwhile share
// that check. It blocks at most Timeout, or until ctx ends (ctx.Err()).
func (h *Health) Ready(ctx context.Context) error {
	h.mu.Lock()
	if h.checked && time.Since(h.at) < h.opts.MaxAge {
		err := h.err
		h.mu.Unlock()
		return err
	}
	running := h.running
	if running == nil {
		running = make(chan struct{})
		h.running = running
		go h.refresh(running)
	}
	h.mu.Unlock()
	select {
	case <-running:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refresh checks, stores the result and closes done. The check does not
// depend on any caller's context: a probe that gives up does not spoil the
// result for the others.
func (h *Health) refresh(done chan struct{}) {
	err := h.Check(context.Background())
	h.mu.Lock()
	changed := !h.checked || (err == nil) != (h.err == nil)
	h.at, h.err, h.checked = time.Now(), err, true
	h.mu.Unlock()
	// Still running: the next check cannot start before OnChange returns.
	if changed && h.opts.OnChange != nil {
		h.opts.OnChange(err)
	}
	h.mu.Lock()
	h.running = nil
	h.mu.Unlock()
	close(done)
}

// Check checks every stream now, through the Health's connection, within
// Timeout (or ctx, if it ends earlier). It does not touch the cached result.
func (h *Health) Check(ctx context.Context) error {
	return h.checkWith(ctx, h.js, h.opts.Fresh)
}

// CheckVia runs the same check through another connection — whether a
// process connected there could write the streams now — counting a replica
// towards the quorum only when the leader heard from it within fresh
// (Options.Fresh when zero).
func (h *Health) CheckVia(ctx context.Context, nc *nats.Conn, fresh time.Duration) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jshealth: %w", err)
	}
	if fresh <= 0 {
		fresh = h.opts.Fresh
	}
	return h.checkWith(ctx, js, fresh)
}

func (h *Health) checkWith(ctx context.Context, js jetstream.JetStream, fresh time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	errs := make([]error, len(h.opts.Streams))
	var wg sync.WaitGroup
	for i, name := range h.opts.Streams {
		wg.Go(func() { errs[i] = CheckStream(ctx, js, name, fresh) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// CheckStream reports whether stream can take a write through js now. It
// sends one stream info request, which in a cluster only the stream's leader
// answers (a member that knows of no leader answers too, naming none), and
// passes when the answer names a leader that has heard, within fresh, from
// enough replicas to make a majority with itself. A server without
// clustering always passes once it answers. Errors wrap ErrNoLeader (no
// answer before ctx ends, or no leader named), ErrNoQuorum, or the request's
// failure (jetstream.ErrStreamNotFound when the stream does not exist).
func CheckStream(ctx context.Context, js jetstream.JetStream, stream string, fresh time.Duration) error {
	s, err := js.Stream(ctx, stream)
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%w: stream %s: no leader answered in time", ErrNoLeader, stream)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeClusterNotAvailable:
		return fmt.Errorf("%w: stream %s: %w", ErrNoLeader, stream, err)
	case err != nil:
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info := s.CachedInfo()
	ci := info.Cluster
	if ci == nil {
		return nil
	}
	if ci.Leader == "" {
		return fmt.Errorf("%w: stream %s: the replica that answered knows of no leader", ErrNoLeader, stream)
	}
	size := max(info.Config.Replicas, 1)
	heard := 1 // the leader itself
	for _, p := range ci.Replicas {
		// Active is the time since the leader last heard from the replica;
		// zero for one it has not heard from since it became leader, unless
		// that replica is current (it answered just now).
		if p != nil && !p.Offline && (p.Active > 0 || p.Current) && p.Active <= fresh {
			heard++
		}
	}
	if need := size/2 + 1; heard < need {
		return fmt.Errorf("%w: stream %s: leader %s heard from %d of %d replicas within %s, needs %d",
			ErrNoQuorum, stream, ci.Leader, heard-1, size-1, fresh, need-1)
	}
	return nil
}
