// Package httpserver is the one HTTP base every sdevents process shares: an echo
// server with /healthz, /readyz and /metrics, one structured log line per
// request, Prometheus request metrics, the single place where errors become
// HTTP answers, and a graceful shutdown.
//
// The server bounds what clients can hold (Limits): open connections, header
// bytes, idle and read time, and the request-body bytes in flight across all
// requests.
//
// Services register their routes on Echo(); they never write error answers
// themselves: they return errors wrapping the sentinels of this package (or of
// the protocol packages) and ErrorHandler maps them.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// ReadyCheck reports whether a dependency is ready; nil means ready.
type ReadyCheck func(ctx context.Context) error

// Server is the shared HTTP server of a process.
type Server struct {
	e        *echo.Echo
	log      zerolog.Logger
	reg      *prometheus.Registry
	limits   Limits
	budget   *budget
	checks   []namedCheck // guarded by mu
	srv      *http.Server // set by Run; guarded by mu: Shutdown may come while Run starts
	ln       *connLimiter
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	mu         sync.Mutex // guards srv, checks, broken and onShutdown
	broken     error      // set by Fail
	onShutdown []func()   // called once by the first Shutdown
}

// Option configures a Server.
type Option func(*Server)

// WithLimits sets the limits of the server; zero fields keep their
// defaults (DefaultLimits).
func WithLimits(l Limits) Option {
	return func(s *Server) { s.limits = l.withDefaults() }
}

type namedCheck struct {
	name  string
	check ReadyCheck
}

// New builds a server (bound by Listen) with DefaultLimits unless an
// option says otherwise. reg receives the process metrics and is served on
// /metrics.
func New(log zerolog.Logger, reg *prometheus.Registry, opts ...Option) *Server {
	s := &Server{e: echo.New(), log: log, reg: reg, limits: DefaultLimits()}
	for _, o := range opts {
		o(s)
	}
	s.budget = newBudget(s.limits.BodyBudget, reg)
	s.e.HideBanner, s.e.HidePort = true, true
	s.e.HTTPErrorHandler = s.handleError
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sdevents", Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests by route, source, bizType (or SNS type) and outcome.",
	}, []string{"route", "source", "kind", "outcome", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "sdevents", Subsystem: "http", Name: "request_duration_seconds",
		Help:    "HTTP request latency by route and kind.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route", "kind"})
	reg.MustRegister(s.requests, s.latency, readiness{s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.e.Use(s.observe, s.limitBodies)
	s.e.GET("/healthz", s.healthz)
	s.e.GET("/readyz", s.ready)
	s.e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	return s
}

// Limits returns the server's limits, defaults filled in.
func (s *Server) Limits() Limits { return s.limits }

// Echo returns the router for services to add routes to.
func (s *Server) Echo() *echo.Echo { return s.e }

// AddReadyCheck adds a check to /readyz and to the sdevents_ready gauge.
// The checks of a probe run concurrently, under one deadline of 2 s;
// /readyz is 200 when every one returns nil.
func (s *Server) AddReadyCheck(name string, c ReadyCheck) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, namedCheck{name, c})
}

// Fail marks the process as broken for good: from now on /healthz and
// /readyz answer 503 with err, so that a supervisor restarts the process.
// The first error is kept. The caller is expected to stop the process.
func (s *Server) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken == nil {
		s.broken = err
	}
}

func (s *Server) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

func (s *Server) healthz(c echo.Context) error {
	if err := s.failed(); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"ok": false, "error": err.Error()})
	}
	return c.JSON(http.StatusOK, map[string]any{"ok": true})
}

func (s *Server) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	problems := map[string]string{}
	for name, err := range s.evaluate(ctx) {
		if err != nil {
			problems[name] = err.Error()
		}
	}
	if len(problems) > 0 {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"ready": false, "problems": problems})
	}
	return c.JSON(http.StatusOK, map[string]any{"ready": true})
}

// Listen binds addr; Addr then tells the bound address (port 0 picks one).
// The listener holds at most Limits.MaxConns connections.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", addr, err)
	}
	s.ln = newConnLimiter(ln, s.limits.MaxConns, s.reg)
	return nil
}

// Addr is the bound address, after Listen.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx ends or Shutdown is called. It returns nil after a
// clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		return errors.New("httpserver: Run before Listen")
	}
	l := s.limits
	srv := &http.Server{
		Handler:           s.e,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		ConnState:         s.ln.connState,
		ErrorLog:          stdlog.New(warnWriter{s.log}, "", 0),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	err := srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("http serve: %w", err)
}

// OnShutdown registers f to be called when Shutdown begins, before it waits
// for the requests in flight: f ends the requests that would otherwise hold
// the shutdown up until its deadline, such as streams of server-sent events.
// The functions are called once, in the order registered, by the first
// Shutdown; f must not block.
func (s *Server) OnShutdown(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onShutdown = append(s.onShutdown, f)
}

// Shutdown stops accepting requests, calls the OnShutdown functions and
// waits for in-flight requests until ctx ends; this is the first phase of a
// process shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, hooks := s.srv, s.onShutdown
	s.onShutdown = nil
	s.mu.Unlock()
	for _, f := range hooks {
		f()
	}
	if srv == nil {
		if s.ln != nil {
			return s.ln.Close()
		}
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// warnWriter writes net/http's own messages (accept errors and their
// back-off, malformed requests) to the process log at warn level.
type warnWriter struct{ log zerolog.Logger }

func (w warnWriter) Write(p []byte) (int, error) {
	w.log.Warn().Str("component", "http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
