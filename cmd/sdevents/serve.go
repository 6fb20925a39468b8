package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/blob/sink"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/jshealth"
	"github.com/sdevents/sdevents/pkg/natsrv"
)

// add registers a long-running part of a service.
func (p *process) add(name string, run func(ctx context.Context) error) {
	p.components = append(p.components, component{name, run})
}

// component is one service wired into a process: Run blocks until ctx ends
// and has drained its consumers by the time it returns.
type component struct {
	name string
	run  func(ctx context.Context) error
}

// process is what one sdevents process runs: the embedded server (run only),
// the NATS connection, the HTTP server and the chosen services.
type process struct {
	cfg  config.Config
	log  zerolog.Logger
	srv  *natsrv.Embedded
	nc   *nats.Conn
	js   jetstream.JetStream
	http *httpserver.Server
	reg  *prometheus.Registry
	// brake and sink are the adminBrake and archiveSink parts, made for
	// the targets that need them.
	brake      *admintoken.Brake
	sink       sink.Store
	components []component
	// natsConns are the services' own connections (natsopts.go).
	natsConns natsConns

	// broken receives the error that ends the process for good (the NATS
	// connection closed); closing is set when the process closes the
	// connection itself.
	broken  chan error
	closing atomic.Bool
}

// errNATSClosed: the NATS connection was closed and will not reconnect
// (nats.go gives up on a connection after some protocol errors, such as a
// control line over the server's limit). Nothing can be stored any more:
// the process stops with a non-zero status for its supervisor to restart it.
var errNATSClosed = errors.New("nats connection closed for good")

// fail reports an error the process cannot recover from: /healthz turns
// red and run stops the process, which then exits non-zero.
func (p *process) fail(err error) {
	p.http.Fail(err)
	select {
	case p.broken <- err:
	default:
	}
}

func newRunCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run every service in one process with an embedded JetStream (unless nats.url is set)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), g, runAll())
		},
	}
}

func newServiceCmd(g *globals, name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if cfg.NATS.URL == "" {
				return fmt.Errorf("%s needs an external NATS: set nats.url (or use `sdevents run`)", name)
			}
			return serve(cmd.Context(), g, []string{name})
		},
	}
}

// serve builds a process with the named services and runs it until SIGINT or
// SIGTERM, then shuts it down in two phases.
func serve(parent context.Context, g *globals, services []string) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, cleanup, err := build(ctx, cfg, services)
	if err != nil {
		return err
	}
	defer cleanup()
	return p.run(ctx)
}

func newLogger(cfg config.Log) zerolog.Logger {
	lvl, _ := zerolog.ParseLevel(cfg.Level) // validated
	var w = zerolog.New(os.Stderr)
	if cfg.Format == "console" {
		w = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr})
	}
	return w.Level(lvl).With().Timestamp().Logger()
}

// build is the composition root: it starts or connects to NATS, applies the
// stream definitions and constructs the services. cleanup closes what build
// opened, in reverse order.
func build(ctx context.Context, cfg config.Config, services []string) (*process, func(), error) {
	p := &process{cfg: cfg, log: serviceLogger(cfg.Log, strings.Join(services, ",")), reg: prometheus.NewRegistry(), broken: make(chan error, 1)}
	announce(p.log, p.reg)
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*process, func(), error) {
		cleanup()
		return nil, nil, err
	}

	// The HTTP server exists before anything can fail the process.
	h := cfg.HTTP
	p.http = httpserver.New(p.log, p.reg, httpserver.WithLimits(httpserver.Limits{
		MaxConns:          h.MaxConnections,
		MaxHeaderBytes:    h.MaxHeaderBytes,
		ReadHeaderTimeout: h.ReadHeaderTimeout.D(),
		IdleTimeout:       h.IdleTimeout.D(),
		BodyBudget:        h.BodyBudget,
		BodyWait:          h.BodyBudgetWait.D(),
	}))

	natsOpts := []nats.Option{
		nats.Name("sdevents"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// With unlimited reconnects the connection closes only when the
		// process closes it or nats.go gives it up for good.
		nats.ClosedHandler(func(nc *nats.Conn) {
			if !p.closing.Load() {
				p.fail(fmt.Errorf("%w: %v", errNATSClosed, nc.LastError()))
			}
		}),
	}
	url := cfg.NATS.URL
	var guard *natsrv.Guard
	if url == "" {
		e := cfg.NATS.Embedded
		users, err := p.embeddedUsers(e.StoreDir)
		if err != nil {
			return fail(err)
		}
		o := natsrv.Options{
			Addr: e.Addr, StoreDir: e.StoreDir, SyncAlways: e.Sync == "always", SyncInterval: e.SyncInterval.D(),
			MaxPayload: e.MaxPayload, MonitorAddr: e.MonitorAddr,
			MaxConns: e.MaxConnections, MaxStore: e.MaxStore, MaxMemory: e.MaxMemory,
			Logger: newNATSLogger(p.log, p.reg), Users: users,
		}
		srv, err := natsrv.StartEmbedded(o)
		if err != nil {
			return fail(err)
		}
		p.srv = srv
		closers = append(closers, srv.Shutdown)
		url = srv.ClientURL()
		guard = natsrv.NewGuard(srv, natsrv.GuardOptions{OnChange: p.storeChanged})
		maxConns := cmp.Or(o.MaxConns, natsrv.DefaultMaxConns())
		p.log.Info().Str("addr", srv.ClientURL()).Str("store_dir", e.StoreDir).Str("sync", e.Sync).
			Int("max_connections", maxConns).Msg("embedded nats-server started")
		if err := p.announceDownstream(e.StoreDir, srv); err != nil {
			return fail(err)
		}
	}
	auth, err := p.mainConnOptions(services)
	if err != nil {
		return fail(err)
	}
	var mover *jshealth.Mover
	if cfg.NATS.URL != "" {
		if mover, err = p.newMover(); err != nil {
			return fail(err)
		}
		natsOpts = append(natsOpts, mover.Option())
	}
	nc, err := nats.Connect(url, append(slices.Clone(natsOpts), auth...)...)
	if err != nil {
		return fail(fmt.Errorf("connect nats %s: %w", url, err))
	}
	p.nc = nc
	closers = append(closers, func() { p.closing.Store(true); nc.Close() })
	if p.js, err = newJetStream(nc); err != nil {
		return fail(err)
	}
	if err := p.applyStreams(ctx, services); err != nil {
		return fail(err)
	}

	p.http.AddReadyCheck("nats", func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	p.watchJetStream(services, mover)
	if guard != nil {
		p.http.AddReadyCheck("store", guard.Ready)
		p.add("store guard", guard.Run)
	}

	if err := p.connectServices(url, natsOpts, services, &closers); err != nil {
		return fail(err)
	}
	if err := p.wireTargets(ctx, services); err != nil {
		return fail(err)
	}
	if err := p.http.Listen(cfg.HTTP.Addr); err != nil {
		return fail(err)
	}
	return p, cleanup, nil
}

// storeChanged logs what the store guard saw: a store that refuses writes
// (readiness is red until it recovers), and its recovery by a restart of
// the embedded server, to which the connection reconnects by itself.
func (p *process) storeChanged(problem error, restarted bool) {
	switch {
	case problem != nil:
		p.log.Error().Err(problem).Msg("JetStream store refuses writes: not ready until it recovers")
	case restarted:
		p.log.Warn().Msg("embedded nats-server restarted: the store accepts writes again")
	default:
		p.log.Warn().Msg("JetStream store healthy again")
	}
}

// run serves until ctx ends, then shuts down in two phases under one deadline:
// stop intake (HTTP), let the components drain their consumers, then drain the
// NATS connection. The embedded server stops in cleanup.
func (p *process) run(ctx context.Context) error {
	errc := make(chan error, len(p.components)+1)
	cctx, cancelComponents := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelComponents()
	go func() { errc <- p.http.Run(ctx) }()
	for _, c := range p.components {
		go func() {
			if err := c.run(cctx); err != nil {
				errc <- fmt.Errorf("%s: %w", c.name, err)
				return
			}
			errc <- nil
		}()
	}
	p.log.Info().Str("http", p.http.Addr()).Int("max_connections", p.http.Limits().MaxConns).Msg("sdevents ready")
	var firstErr error
	select {
	case <-ctx.Done():
		p.log.Info().Msg("shutting down")
	case err := <-errc:
		firstErr = err
		p.log.Error().Err(err).Msg("a component stopped: shutting down")
	case err := <-p.broken:
		firstErr = err
		p.log.Error().Err(err).Msg("shutting down for a restart")
	}
	deadline, cancel := context.WithTimeout(context.Background(), p.cfg.Shutdown.D())
	defer cancel()
	if err := p.http.Shutdown(deadline); err != nil && firstErr == nil {
		firstErr = err
	}
	cancelComponents()
	for range len(p.components) {
		select {
		case err := <-errc:
			if err != nil && firstErr == nil {
				firstErr = err
			}
		case <-deadline.Done():
			p.log.Warn().Msg("components did not stop before the shutdown deadline")
		}
	}
	p.closing.Store(true)
	if err := p.nc.Drain(); err == nil {
		for p.nc.IsDraining() && deadline.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	p.log.Info().Msg("stopped")
	return firstErr
}
