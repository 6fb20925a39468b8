package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// ErrDisabled is returned by New when Config.AdminToken (admin.token) is
// empty: the console is off, like the admin API. Callers skip the console (sdevents run) or refuse
// to start (sdevents console).
var ErrDisabled = errors.New("console: admin.token is empty, the console is off")

// thumbCacheBytes bounds the thumbnail cache of one console.
const thumbCacheBytes = 32 << 20

// Service is one console replica: HTTP pages under /console that read the
// streams, and a subscription to sd.> for the live view. Build it with New,
// register its pages with Routes, start the live view with Run. Any number
// of replicas may run; sessions are valid on all of them.
type Service struct {
	cfg    Config // defaults filled in
	nc     *nats.Conn
	js     jetstream.JetStream
	reader Reader
	store  ImageStore
	keys   sinkKeys
	thumbs *thumbnailer
	quota  Quota
	auth   *auth
	live   *live
	views  *views
	log    zerolog.Logger
	now    func() time.Time
	brake  *admintoken.Brake // counts wrong admin tokens; shared with the operator API
}

// Quota is what the console asks of the quota service: grants, and an
// account's balances and open reservations. pkg/quotaclient implements it
// over NATS, answered by any quota replica; its errors wrap the quotarpc
// sentinels (ErrInvalid, ErrInsufficientCredits, ErrUnavailable), which the
// console answers 400, 409 and 503 like the admin API.
type Quota interface {
	Grant(ctx context.Context, req quotarpc.GrantRequest) (quotarpc.GrantAnswer, error)
	Account(ctx context.Context, id string) (quotarpc.AccountState, error)
}

// Option changes a Service built by New.
type Option func(*Service)

// WithLogger sets the logger of the live subscription's failures.
func WithLogger(l zerolog.Logger) Option { return func(s *Service) { s.log = l } }

// WithReader wraps the stream reader (tests count reads with it).
func WithReader(wrap func(Reader) Reader) Option {
	return func(s *Service) { s.reader = wrap(s.reader) }
}

// WithAdminBrake makes the console count wrong admin tokens (login form and
// bearer header) on b, the brake the composition root shares with the
// operator API: a guesser gets admintoken.MaxFailures tries in all. Without
// it the console has a brake of its own.
func WithAdminBrake(b *admintoken.Brake) Option { return func(s *Service) { s.brake = b } }

// WithClock replaces time.Now (sessions, live buckets).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New builds a console over the JetStream context of an open NATS
// connection, reading images from store (which it does not create), that
// grants and reads balances through quota. It fails with ErrDisabled when
// cfg.AdminToken is empty, with one wrapping ErrInvalidConfig for an
// unusable cfg, and when the streams of streams/ or the bucket
// contract.BucketConsoleSessions are missing (or the bucket keeps entries
// no longer than a session lives).
func New(ctx context.Context, cfg Config, js jetstream.JetStream, store ImageStore, quota Quota, opts ...Option) (*Service, error) {
	token := cfg.AdminToken
	if token == "" {
		return nil, ErrDisabled
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	cfg = cfg.withDefaults()
	nc := js.Conn()
	for _, name := range []string{contract.StreamIngress, contract.StreamQuota, contract.StreamArchive, contract.StreamJobs} {
		if _, err := js.Stream(ctx, name); err != nil {
			return nil, fmt.Errorf("console: stream %s: %w", name, err)
		}
	}
	s := &Service{cfg: cfg, nc: nc, js: js, reader: NewReader(nc), store: store, keys: keysOf(store), quota: quota,
		log: zerolog.Nop(), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	s.thumbs = newThumbnailer(s.store, thumbCacheBytes)
	if s.brake == nil {
		s.brake = admintoken.NewBrake(func() time.Time { return s.now() })
	}
	s.auth = newAuth(token, s.brake, func() time.Time { return s.now() })
	var err error
	if s.auth.ended, err = js.KeyValue(ctx, contract.BucketConsoleSessions); err != nil {
		return nil, fmt.Errorf("console: bucket %s: %w", contract.BucketConsoleSessions, err)
	}
	if st, err := s.auth.ended.Status(ctx); err != nil {
		return nil, fmt.Errorf("console: bucket %s: %w", contract.BucketConsoleSessions, err)
	} else if ttl := st.TTL(); ttl != 0 && ttl <= sessionTTL {
		return nil, fmt.Errorf("console: bucket %s keeps entries %s, not longer than a session lives (%s): a session ended by logout would be valid again", contract.BucketConsoleSessions, ttl, sessionTTL)
	}
	s.live = newLive(func() time.Time { return s.now() }, cfg.LiveMaxClients)
	if s.views, err = loadViews(); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	return s, nil
}

// Routes registers the console's pages under /console on e.
func (s *Service) Routes(e *echo.Echo) {
	e.GET("/console", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, "/console/jobs") })
	g := e.Group("/console", s.secureHeaders, s.answerErrors, limitForms)
	g.GET("/", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, "/console/jobs") })
	g.GET("/static/*", s.handleStatic)
	g.GET("/login", s.handleLoginForm)
	g.POST("/login", s.handleLogin)

	a := g.Group("", s.auth.require)
	a.POST("/logout", s.handleLogout)
	a.GET("/jobs", s.handleJobs)
	a.GET("/jobs/:seq", s.handleJob)
	a.GET("/thumb", s.handleThumb)
	a.GET("/image", s.handleImage)
	a.GET("/accounts", s.handleAccounts)
	a.POST("/accounts/find", s.handleFind)
	a.POST("/accounts/grant", s.handleGrant)
	a.GET("/accounts/:account", s.handleAccount)
	a.GET("/archive", s.handleArchive)
	a.POST("/archive/:seq/retry", s.handleRetry)
	a.GET("/dead", s.handleDead)
	a.GET("/live", s.handleLive)
	a.GET("/live/chart", s.handleChart)
	a.GET("/live/stream", s.handleStream)
}

// Run feeds the live view from a core NATS subscription to sd.> until ctx
// ends, then unsubscribes and ends the SSE streams. It returns an error only
// when it cannot subscribe.
func (s *Service) Run(ctx context.Context) error {
	sub, err := s.nc.Subscribe(contract.SubjectEvents, s.live.observe)
	if err != nil {
		return fmt.Errorf("console: subscribe sd.>: %w", err)
	}
	// The tail may fall behind under load: drop, never block the connection.
	_ = sub.SetPendingLimits(65536, 64<<20)
	<-ctx.Done()
	_ = sub.Unsubscribe()
	s.Close()
	return nil
}

// Close ends every live stream (server-sent events) now, and refuses new
// ones. Call it when the process starts shutting down, before the HTTP
// server waits for its requests (httpserver.Server.OnShutdown): a graceful
// shutdown waits for open streams. The pages keep working.
func (s *Service) Close() { s.live.close() }

// secureHeaders sets the headers every console answer carries: a strict
// content security policy (scripts and styles from /console/static only),
// no sniffing, no framing, no referrer, and no caching of pages.
func (s *Service) secureHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set(echo.HeaderCacheControl, "no-store")
		return next(c)
	}
}

// answerErrors is where the console's errors become pages: the status comes
// from httpserver.StatusOf, as for every other answer of the process, but a
// browser gets HTML instead of JSON (the login form for 401). The error is
// recorded for the request log line.
func (s *Service) answerErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil {
			return nil
		}
		if c.Response().Committed {
			httpserver.Info(c).Err = err
			return nil
		}
		status := httpserver.StatusOf(err)
		info := httpserver.Info(c)
		info.Err = err
		msg := err.Error()
		var he *echo.HTTPError
		if errors.As(err, &he) {
			msg = fmt.Sprint(he.Message)
		}
		if status == http.StatusInternalServerError {
			msg = "internal error"
		}
		if status == http.StatusUnauthorized {
			return s.renderLogin(c, status, msg)
		}
		return s.render(c, status, "error", page{Title: http.StatusText(status), CSRF: csrfOf(c), LoggedIn: csrfOf(c) != "",
			Data: errorPage{Status: status, Message: msg}})
	}
}

type errorPage struct {
	Status  int
	Message string
}

func (s *Service) handleLoginForm(c echo.Context) error {
	return s.renderLogin(c, http.StatusOK, "")
}

func (s *Service) renderLogin(c echo.Context, status int, msg string) error {
	if status == http.StatusUnauthorized {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="sdevents console"`)
	}
	return s.render(c, status, "login", page{Title: "Log in", CSRF: loginCSRF(c), Data: errorPage{Status: status, Message: msg}})
}
