package natsrv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// A stream's file store keeps the first write error it meets (no space
// left, no descriptors left, an I/O error) and refuses every later write
// with it, however long ago the cause went away; the server's own health
// check reports it ("JetStream stream '$G > INGRESS' write error: ..."),
// and nothing short of reopening the store clears it. The Guard polls that
// health check, and once the store directory accepts a probe write again it
// restarts the embedded server in the process: every stream and consumer
// is closed and recovered from disk, which clears the error, and clients
// reconnect. Acknowledged messages are on disk already (a single node
// writes each message before it acknowledges it); the write that failed was
// never acknowledged.
//
// Restarting JetStream alone inside the running server
// (Server.ShutdownJetStream, then EnableJetStream) would keep client
// connections up, but nats-server 2.15 re-creates its API queues then
// without a lock while requests arrive: a data race. A new server has none.

// Guard watches the JetStream store of an embedded server and brings it
// back after a write error.
type Guard struct {
	e    *Embedded
	opts GuardOptions

	mu      sync.Mutex
	problem error
}

// GuardOptions tune a Guard; zero fields take their defaults.
type GuardOptions struct {
	// Interval between health checks (default 1s). A problem counts once
	// two checks in a row see it.
	Interval time.Duration
	// MaxBackoff bounds the wait between restarts of the server while the
	// problem stays (default 30s); the wait starts at Interval and doubles.
	MaxBackoff time.Duration
	// ProbeBytes is the size of the probe file written, synced and removed
	// in the store directory before a restart (default 1 MiB).
	ProbeBytes int
	// OnChange is called from Run with the store's problem when it starts
	// or changes, and with nil once the store is healthy again; restarted
	// tells that a restart of the server brought it back.
	OnChange func(problem error, restarted bool)
}

// ErrStoreBroken is what Ready returns, wrapped with the server's reason,
// while the store refuses writes: the process should not get traffic until
// the Guard has brought it back.
var ErrStoreBroken = errors.New("jetstream store unhealthy")

// NewGuard returns a guard of e.
func NewGuard(e *Embedded, opts GuardOptions) *Guard {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.ProbeBytes <= 0 {
		opts.ProbeBytes = 1 << 20
	}
	if opts.OnChange == nil {
		opts.OnChange = func(error, bool) {}
	}
	return &Guard{e: e, opts: opts}
}

// Ready returns nil while the store is healthy, else ErrStoreBroken with
// the server's reason. It does not block.
func (g *Guard) Ready(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.problem != nil {
		return fmt.Errorf("%w: %v", ErrStoreBroken, g.problem)
	}
	return nil
}

// Run checks the store every Interval until ctx ends, and restarts the
// server when a problem stays and the store directory accepts writes. It
// returns nil when ctx ends.
func (g *Guard) Run(ctx context.Context) error {
	tick := time.NewTicker(g.opts.Interval)
	defer tick.Stop()
	var (
		seen      error // the previous check's problem
		backoff   = g.opts.Interval
		nextReset time.Time
		restarted bool
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		err := g.check()
		if err == nil {
			if g.set(nil) {
				g.opts.OnChange(nil, restarted)
			}
			seen, restarted, backoff, nextReset = nil, false, g.opts.Interval, time.Time{}
			continue
		}
		if seen == nil {
			// Once is not yet a problem: a stream may be in the middle of
			// being created.
			seen = err
			continue
		}
		seen = err
		if g.set(err) {
			g.opts.OnChange(err, false)
		}
		if time.Now().Before(nextReset) {
			continue
		}
		nextReset = time.Now().Add(backoff)
		backoff = min(2*backoff, g.opts.MaxBackoff)
		if perr := g.probe(); perr != nil {
			continue
		}
		if rerr := g.e.Restart(); rerr != nil {
			if p := fmt.Errorf("%v; %w", err, rerr); g.set(p) {
				g.opts.OnChange(p, false)
			}
			continue
		}
		restarted = true
	}
}

// set records the problem and reports whether it changed.
func (g *Guard) set(err error) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	changed := (g.problem == nil) != (err == nil) || (err != nil && g.problem.Error() != err.Error())
	g.problem = err
	return changed
}

// check asks the server's own health check, which reports the write error
// a stream keeps and a JetStream that was switched off.
func (g *Guard) check() error {
	srv := g.e.Server()
	if srv == nil {
		return errors.New("embedded nats-server not running")
	}
	h := srv.Healthz(&server.HealthzOptions{})
	if h.Error != "" {
		return errors.New(h.Error)
	}
	if h.StatusCode >= 300 {
		return fmt.Errorf("health status %d", h.StatusCode)
	}
	return nil
}

// probe writes, syncs and removes ProbeBytes in the store directory: it
// fails while the file system is full or the process has no descriptors.
func (g *Guard) probe() (err error) {
	f, err := os.CreateTemp(g.e.o.StoreDir, ".sdevents-probe-*")
	if err != nil {
		return fmt.Errorf("natsrv: probe: %w", err)
	}
	defer func() {
		_ = f.Close()
		if rerr := os.Remove(f.Name()); rerr != nil && err == nil {
			err = fmt.Errorf("natsrv: probe: %w", rerr)
		}
	}()
	if _, err := f.Write(make([]byte, g.opts.ProbeBytes)); err != nil {
		return fmt.Errorf("natsrv: probe: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("natsrv: probe: %w", err)
	}
	return nil
}
