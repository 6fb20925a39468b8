package quota

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/pkg/drain"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// Concurrency bounds of one replica: decision requests, fired timers and
// operator requests (kept apart so that a burst of expiries or grants cannot
// hold up the platform's answers). Beyond them the subscription, or the
// consumer, waits.
const (
	maxInflight         = 1024
	maxInflightExpiry   = 32
	maxInflightOperator = 16
)

// Service is one replica of the quota service. Build it with New, start it
// with Run and register its operator API with Routes. Any number of replicas
// may run against the same JetStream.
type Service struct {
	cfg      Config // defaults filled in
	nc       *nats.Conn
	js       jetstream.JetStream
	store    *store
	accounts accounts
	now      func() time.Time
	log      zerolog.Logger
	metrics  *metrics
	brake    *admintoken.Brake // counts wrong admin tokens; shared with the console

	perImage      int64
	ttl           time.Duration
	deadline      time.Duration // bound of one synchronous decision
	maxAge        time.Duration // a decide request older than this is answered unseen
	retention     time.Duration // how long finished invokeIds are remembered
	snapshotEvery int           // events between two snapshots of an account

	slots         chan struct{} // decision requests in flight
	expirySlots   chan struct{} // fired timers in flight
	operatorSlots chan struct{} // grant and account requests in flight
	inflight      sync.WaitGroup

	// expiryBudget is quota-expiry's max_deliver, read by Run; dead
	// records the timers given up on (expiry.go).
	expiryBudget deadletter.Budget
	dead         *deadletter.Recorder

	// bg bounds background work (abandonments); Run cancels it on its way
	// out.
	bg     context.Context
	stopBG context.CancelFunc
	// work bounds the decisions and expiries in flight; Run cancels it when
	// they outlast its drain limit.
	work     context.Context
	stopWork context.CancelFunc

	gate func() // called before each RPC request is handled; nil = none
}

// Option changes a Service built by New.
type Option func(*Service)

// WithClock replaces time.Now for the decisions (expiry tests). Timers still
// fire on the server's clock.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithLogger sets the logger of failures and expiries (default: none).
func WithLogger(l zerolog.Logger) Option { return func(s *Service) { s.log = l } }

// WithAdminBrake makes the operator API count wrong admin tokens on b, the
// brake the composition root shares with every other part of the process
// that accepts the admin token (the console): a guesser gets
// admintoken.MaxFailures tries in all. Without it the API has a brake of its
// own.
func WithAdminBrake(b *admintoken.Brake) Option { return func(s *Service) { s.brake = b } }

// WithGate makes the replica call gate before it handles each request on its
// RPC subjects (decide, abandon, grant, account), in the order they arrive
// on each. Tests hold a
// replica's requests back by blocking in gate, as a stopped process would;
// what was held is handled, in order, once gate returns.
func WithGate(gate func()) Option { return func(s *Service) { s.gate = gate } }

// New builds a quota replica over the JetStream context of an open NATS
// connection, on which it also answers the RPC subjects. The streams of
// streams/ must have been applied: New returns an error when QUOTA,
// QUOTA_TIMERS or the quota-expiry consumer is missing, when
// cfg.ReservationTTL is not shorter than QUOTA_TIMERS' max age (a timer
// would be removed before it fires), when cfg.DecidedRetention is not
// longer than QUOTA's duplicate window, and one wrapping ErrInvalidConfig
// for an unusable cfg. reg receives the quota metrics.
func New(ctx context.Context, cfg Config, js jetstream.JetStream, reg prometheus.Registerer, opts ...Option) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	cfg = cfg.withDefaults()
	nc := js.Conn()
	ledgerStream, err := js.Stream(ctx, contract.StreamQuota)
	if err != nil {
		return nil, fmt.Errorf("quota: stream %s: %w", contract.StreamQuota, err)
	}
	timers, err := js.Stream(ctx, contract.StreamQuotaTimers)
	if err != nil {
		return nil, fmt.Errorf("quota: stream %s: %w", contract.StreamQuotaTimers, err)
	}
	expiry, err := timers.Consumer(ctx, expiryDurable)
	if err != nil {
		return nil, fmt.Errorf("quota: consumer %s: %w", expiryDurable, err)
	}
	ttl := cfg.ReservationTTL
	if maxAge := timers.CachedInfo().Config.MaxAge; maxAge > 0 && ttl >= maxAge {
		return nil, fmt.Errorf("quota: reservation_ttl %s must be shorter than the max age of %s (%s)", ttl, contract.StreamQuotaTimers, maxAge)
	}
	// An invokeId decided anew after its outcome was forgotten appends the
	// message ids of its first life again: the stream must have forgotten
	// them first.
	retention := cfg.DecidedRetention
	if window := ledgerStream.CachedInfo().Config.Duplicates; retention < ledger.MinRetention || retention <= window {
		return nil, fmt.Errorf("quota: decided_retention %s must be at least %s and longer than the duplicate window of %s (%s)",
			retention, ledger.MinRetention, contract.StreamQuota, window)
	}
	m := newMetrics(reg)
	reg.MustRegister(newBacklog(expiry))
	dead, err := deadletter.NewRecorder(js, reg, expiryDurable)
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{
		bg:       bg,
		stopBG:   stopBG,
		work:     work,
		stopWork: stopWork,
		cfg:      cfg,
		nc:       nc,
		js:       js,
		accounts: accounts{m: map[string]*entry{}, max: cfg.MaxAccounts, idle: cfg.AccountIdle,
			size: func(n int) { m.accounts.Set(float64(n)) }},
		now:           time.Now,
		log:           zerolog.Nop(),
		metrics:       m,
		perImage:      cfg.PerImage,
		ttl:           ttl,
		deadline:      cfg.DecideDeadline,
		maxAge:        cfg.RequestMaxAge,
		retention:     retention,
		snapshotEvery: cfg.SnapshotEvery,
		slots:         make(chan struct{}, maxInflight),
		expirySlots:   make(chan struct{}, maxInflightExpiry),
		operatorSlots: make(chan struct{}, maxInflightOperator),
		dead:          dead,
	}
	s.store = &store{nc: nc, js: js, timerSent: s.watchTimer}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Run serves the RPC subjects of package quotarpc in queue group
// quotarpc.QueueGroup (decisions, abandonments, grants and account views)
// and the expiry timers until ctx ends, records the timers given up on,
// drops idle accounts from memory and sweeps the others for overdue
// reservations; then it drains (package drain): it stops reading the RPC
// subjects and the timers, lets every request and timer in flight finish
// for at most Config.DrainTimeout (then cancels them: a timer not
// acknowledged fires again), and returns nil. It returns an error only when
// it cannot start.
func (s *Service) Run(ctx context.Context) error {
	var subs []*nats.Subscription
	unsubscribe := func() {
		for _, sb := range subs {
			_ = sb.Unsubscribe()
		}
	}
	for _, h := range []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{quotarpc.SubjectDecide, s.onDecide},
		{quotarpc.SubjectAbandon, s.onAbandon},
		{quotarpc.SubjectGrant, s.onGrant},
		{quotarpc.SubjectAccount, s.onAccount},
	} {
		sb, err := s.nc.QueueSubscribe(h.subject, quotarpc.QueueGroup, h.handle)
		if err != nil {
			unsubscribe()
			return fmt.Errorf("quota: subscribe %s: %w", h.subject, err)
		}
		subs = append(subs, sb)
	}
	cons, err := s.js.Consumer(ctx, contract.StreamQuotaTimers, expiryDurable)
	if err != nil {
		unsubscribe()
		return fmt.Errorf("quota: consumer %s: %w", expiryDurable, err)
	}
	s.expiryBudget = deadletter.BudgetOf(cons.CachedInfo().Config)
	stopWatch, err := s.watchDead()
	if err != nil {
		unsubscribe()
		return err
	}
	defer stopWatch()
	// Short pulls: a pull request a failing consumer leader drops is renewed
	// within seconds, not after the default 30 s.
	cc, err := cons.Consume(s.onDue, jetstream.PullMaxMessages(64), jetstream.PullExpiry(5*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, nats.ErrConnectionClosed) {
				s.log.Warn().Err(err).Msg("quota: expiry consumer")
			}
		}))
	if err != nil {
		unsubscribe()
		return fmt.Errorf("quota: consume %s: %w", expiryDurable, err)
	}
	s.evictIdle(ctx)

	stopIntake := func() {
		for _, sb := range subs {
			closed := sb.StatusChanged(nats.SubscriptionClosed)
			if err := sb.Drain(); err == nil {
				for range closed { // closed when the subscription is
				}
			}
		}
		cc.Drain()
		<-cc.Closed()
		s.stopBG()
	}
	drain.Wait(s.cfg.DrainTimeout, s.stopWork, stopIntake, s.inflight.Wait)
	s.stopWork()
	return nil
}

// evictIdle drops the accounts unused for quota.account_idle from memory,
// checking a few times per idle period (at least once a minute), and sweeps
// the accounts held for overdue reservations every overdueGrace
// (sweepOverdue), until ctx ends.
func (s *Service) evictIdle(ctx context.Context) {
	tick := time.NewTicker(min(max(s.accounts.idle/4, time.Second), time.Minute))
	defer tick.Stop()
	sweep := time.NewTicker(overdueGrace)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.metrics.evictions.Add(float64(s.accounts.evict(s.now())))
		case <-sweep.C:
			s.sweepOverdue(s.now())
		}
	}
}

// Routes registers the operator API (CONTRACT §7) on e when admin.token is
// set; without a token it registers nothing.
func (s *Service) Routes(e *echo.Echo) {
	if s.cfg.AdminToken == "" {
		return
	}
	brake := s.brake
	if brake == nil {
		brake = admintoken.NewBrake(s.now)
	}
	g := e.Group("/v1/admin", s.redactPath, requireToken(admintoken.New(s.cfg.AdminToken, brake)))
	g.POST("/accounts/:account/credits", s.handleGrant)
	g.GET("/accounts/:account", s.handleAccount)
}

// spawn runs fn in a goroutine of its own once one of slots is free,
// blocking until then (the subscription or consumer that called it waits
// with it); Run waits for every spawned fn before it returns.
func (s *Service) spawn(slots chan struct{}, fn func()) {
	slots <- struct{}{}
	s.inflight.Add(1)
	go func() {
		defer func() { <-slots; s.inflight.Done() }()
		fn()
	}()
}

type metrics struct {
	decisions  *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	conflicts  prometheus.Counter
	duplicates prometheus.Counter
	loads      prometheus.Counter
	loaded     prometheus.Counter
	snapshots  prometheus.Counter
	accounts   prometheus.Gauge
	evictions  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "quota", Name: "decisions_total",
			Help: "Quota decisions by kind (bizType, abandon, expire: a fired timer, sweep: an overdue reservation without one, grant) and outcome (accepted, refused, error).",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sdevents", Subsystem: "quota", Name: "decision_duration_seconds",
			Help:    "Time to decide and store one quota decision, retries included.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"kind"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "quota", Name: "append_conflicts_total",
			Help: "Appends refused because another writer moved the account's subject on first.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "quota", Name: "append_duplicates_total",
			Help: "Appends refused because a message with the same id was being or had been stored; answered from the stored outcome.",
		}),
		loads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "quota", Name: "account_loads_total",
			Help: "Accounts loaded from the stream (first use, after eviction, or behind the stream).",
		}),
		loaded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "quota", Name: "account_load_events_total",
			Help: "Events read to load accounts, after their latest snapshot.",
		}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "quota", Name: "snapshots_total",
			Help: "Account snapshots this replica appended.",
		}),
		accounts: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sdevents", Subsystem: "quota", Name: "accounts_in_memory",
			Help: "Accounts this replica holds in memory.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "quota", Name: "account_evictions_total",
			Help: "Accounts dropped from memory for being idle (the least recently used beyond quota.max_accounts are not counted).",
		}),
	}
	reg.MustRegister(m.decisions, m.duration, m.conflicts, m.duplicates, m.loads, m.loaded, m.snapshots, m.accounts, m.evictions)
	return m
}

func (m *metrics) observe(kind string, start time.Time, success bool, err error) {
	outcome := "accepted"
	switch {
	case err != nil:
		outcome = "error"
	case !success:
		outcome = "refused"
	}
	m.decisions.WithLabelValues(kind, outcome).Inc()
	m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}
