// Package ingress is the HTTP front of sdevents: it proves every callback and
// SNS delivery genuine, records it in the INGRESS stream, and answers the
// platform. Synchronous callbacks are answered by the quota service over NATS
// (package quotarpc) within the configured deadline.
//
// A 2xx answer is given only after JetStream acknowledged the event. The
// service holds no state of its own: any number of replicas may run.
package ingress

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

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/drain"
	"github.com/sdevents/sdevents/pkg/sns"
)

// Service is the ingress. Build it with New; register its routes with Routes.
type Service struct {
	cfg   Config // defaults filled in
	nc    *nats.Conn
	store *Store
	// claims makes each callback sign acceptable once.
	claims *claims
	// sources verify the callbacks of each source, by name.
	sources map[string]*callback.Verifier
	first   string
	// snsSources are the SNS sources by name.
	snsSources map[string]*snsSource
	snsOpts    []func(*sns.Config)
	now        func() time.Time
	metrics    *metrics

	// confirms claims subscription confirmations (contract.BucketSNSConfirmations); nil
	// when no SNS source confirms automatically.
	confirms jetstream.KeyValue

	// bg bounds background work (abandonments, abandon.go); Run cancels it
	// and waits for it on its way out.
	bg     context.Context
	stopBG context.CancelFunc
	work   sync.WaitGroup
}

// Option changes a Service built by New.
type Option func(*Service)

// WithSNSConfig adjusts every SNS verifier's configuration (tests route AWS
// host names to a local server, or inject a clock).
func WithSNSConfig(f func(*sns.Config)) Option {
	return func(s *Service) { s.snsOpts = append(s.snsOpts, f) }
}

// WithClock replaces time.Now, for freshness tests.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New builds the ingress over the JetStream context of an open NATS
// connection (the decisions of synchronous callbacks are asked over the
// same connection). The streams must have been applied. reg receives the
// ingress metrics. It fails with ErrInvalidConfig for an unusable cfg.
func New(ctx context.Context, cfg Config, js jetstream.JetStream, reg prometheus.Registerer, opts ...Option) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	cfg = cfg.withDefaults()
	stream, err := js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	claimStream, err := js.Stream(ctx, contract.StreamIngressClaims)
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	m := newMetrics(reg)
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{
		bg:     bg,
		stopBG: stopBG,
		cfg:    cfg,
		nc:     js.Conn(),
		store: &Store{js: js, stream: stream, seen: newSeenIndex(cfg.DedupHorizon),
			timeout: cfg.PublishTimeout, observe: m.publish.Observe},
		claims:  &claims{js: js, stream: claimStream, timeout: cfg.PublishTimeout},
		sources: map[string]*callback.Verifier{},
		now:     time.Now,
		metrics: m,
	}
	for i, cb := range cfg.Callbacks {
		s.sources[cb.Name] = callback.NewVerifier(cb.Keys)
		if i == 0 {
			s.first = cb.Name
		}
	}
	for _, o := range opts {
		o(s)
	}
	m.watchIndex(reg, s.store.seen)
	s.snsSources = map[string]*snsSource{}
	for _, c := range cfg.SNS {
		src, err := newSNSSource(c, cfg.SNSMaxAge, s.snsOpts...)
		if err != nil {
			return nil, fmt.Errorf("ingress: %w", err)
		}
		s.snsSources[c.Name] = src
		if c.AutoConfirm && s.confirms == nil {
			if s.confirms, err = js.KeyValue(ctx, contract.BucketSNSConfirmations); err != nil {
				return nil, fmt.Errorf("ingress: %w", err)
			}
		}
	}
	return s, nil
}

// Run keeps the de-duplication index current until ctx ends; then it
// drains (package drain): the background work in flight (abandonments) has
// Config.DrainTimeout to finish before it is cancelled.
func (s *Service) Run(ctx context.Context) error {
	err := s.store.seen.tail(ctx, s.store.js)
	drain.Wait(s.cfg.DrainTimeout, s.stopBG, s.work.Wait)
	s.stopBG()
	return err
}

// Ready reports whether the de-duplication index has caught up with the
// stream; until then asynchronous events are answered 503.
func (s *Service) Ready(context.Context) error {
	if !s.store.seen.ready.Load() {
		return errIndexWarming
	}
	return nil
}

// Routes registers the ingress endpoints on e.
func (s *Service) Routes(e *echo.Echo) {
	e.POST("/v1/callbacks", s.handleCallback)
	e.POST("/v1/callbacks/:source", s.handleCallback)
	e.POST("/v1/sns/:source", s.handleSNS)
}

// errStore marks a failure to store an event: the platform should retry.
var errStore = errors.New("event not stored")

type metrics struct {
	publish prometheus.Observer
}

// watchIndex exports the size of the de-duplication index and how far its
// tail lags behind the newest stored event it has seen.
func (m *metrics) watchIndex(reg prometheus.Registerer, x *seenIndex) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sdevents", Subsystem: "ingress", Name: "dedup_index_entries",
			Help: "Events remembered by this replica's long-horizon de-duplication index.",
		}, func() float64 { return float64(x.entries.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sdevents", Subsystem: "ingress", Name: "dedup_index_ready",
			Help: "1 once the index has caught up with INGRESS after a start.",
		}, func() float64 {
			if x.ready.Load() {
				return 1
			}
			return 0
		}),
	)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "sdevents", Subsystem: "ingress", Name: "publish_duration_seconds",
		Help:    "Time to store one event in INGRESS, de-duplication included.",
		Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2},
	})
	reg.MustRegister(h)
	return &metrics{publish: h}
}
