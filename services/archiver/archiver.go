package archiver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/pkg/drain"
	"github.com/sdevents/sdevents/pkg/fetch"
)

// ConsumerName is the durable INGRESS consumer shared by every replica.
const ConsumerName = "archiver"

// Service is the archiver. Build it with New and run it with Run; several
// replicas may run against the same JetStream, sharing the work.
type Service struct {
	js        jetstream.JetStream
	nc        *nats.Conn
	cons      jetstream.Consumer // INGRESS > archiver
	ingress   jetstream.Stream
	timers    jetstream.Stream
	intakes   []*intake
	store     BlobStore
	sources   sources
	outcomes  *outcomes
	workers   int
	maxImages int
	lifetime  time.Duration
	backoff   backoff
	drain     time.Duration // Config.DrainTimeout
	stats     time.Duration
	now       func() time.Time
	log       zerolog.Logger
	metrics   *metrics
	dead      *deadletter.Recorder
	httpCfg   func(*fetch.HTTPConfig)
}

// Option changes a Service built by New.
type Option func(*Service)

// WithHTTPConfig adjusts the http(s) source's configuration (timeouts, TLS,
// resolver) after it was filled from the archive configuration.
func WithHTTPConfig(f func(*fetch.HTTPConfig)) Option { return func(s *Service) { s.httpCfg = f } }

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithBackoff sets the delays of retries after transient failures
// (defaults DefaultBackoffMin and DefaultBackoffMax). Retries are message
// schedules, whose resolution is a second.
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(s *Service) { s.backoff = backoff{min: minDelay, max: max(minDelay, maxDelay)} }
}

// WithStatsInterval sets how often Run reads the consumers' and the retry
// stream's state into the gauges (default DefaultStatsInterval).
func WithStatsInterval(d time.Duration) Option { return func(s *Service) { s.stats = d } }

// WithLogger sets the logger (default: none).
func WithLogger(l zerolog.Logger) Option { return func(s *Service) { s.log = l } }

// DefaultStatsInterval is how often the gauges of pending work are read.
const DefaultStatsInterval = 15 * time.Second

// New builds the archiver over the JetStream context of an open NATS
// connection, writing to store, which it makes ready (bucket or directory
// created). The streams, the archiver's consumers and the ARCHIVE_KEYS
// bucket must have been applied. reg receives the archiver metrics. It
// fails with ErrInvalidConfig for an unusable cfg.
func New(ctx context.Context, cfg Config, js jetstream.JetStream, store BlobStore, reg prometheus.Registerer, opts ...Option) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	cfg = cfg.withDefaults()
	s := &Service{
		js:        js,
		nc:        js.Conn(),
		store:     store,
		workers:   cfg.Workers,
		maxImages: cfg.MaxImagesPerTask,
		lifetime:  cfg.URLLifetime,
		backoff:   backoff{min: DefaultBackoffMin, max: DefaultBackoffMax},
		drain:     cfg.DrainTimeout,
		stats:     DefaultStatsInterval,
		now:       time.Now,
		log:       zerolog.Nop(),
	}
	for _, o := range opts {
		o(s)
	}
	var err error
	// Each intake holds a bounded number of messages: enough for the
	// workers to choose fairly among accounts and hosts, few enough that
	// other replicas get the rest.
	lookahead := 4 * s.workers
	for _, c := range []struct {
		stream, name string
		open         func(context.Context, *held) ([]*job, error)
		hold         int
		level        zerolog.Level
	}{
		{contract.StreamIngress, ConsumerName, s.openTask, lookahead, zerolog.InfoLevel},
		{contract.StreamArchiverTimers, DueConsumerName, s.openDue, lookahead, zerolog.DebugLevel},
		{contract.StreamArchiverRetry, RetryConsumerName, s.openRequest, s.workers, zerolog.InfoLevel},
	} {
		cons, err := js.Consumer(ctx, c.stream, c.name)
		if err != nil {
			return nil, fmt.Errorf("archiver: consumer %s/%s: %w", c.stream, c.name, err)
		}
		cc := cons.CachedInfo().Config
		s.intakes = append(s.intakes, &intake{
			name: c.name, stream: c.stream, cons: cons, ackWait: cc.AckWait, budget: deadletter.BudgetOf(cc),
			slots: make(chan struct{}, c.hold), open: c.open, level: c.level,
		})
		if c.name == ConsumerName {
			s.cons = cons
		}
	}
	if s.ingress, err = js.Stream(ctx, contract.StreamIngress); err != nil {
		return nil, fmt.Errorf("archiver: stream %s: %w", contract.StreamIngress, err)
	}
	if s.timers, err = js.Stream(ctx, contract.StreamArchiverTimers); err != nil {
		return nil, fmt.Errorf("archiver: stream %s: %w", contract.StreamArchiverTimers, err)
	}
	kv, err := js.KeyValue(ctx, contract.BucketArchiveKeys)
	if err != nil {
		return nil, fmt.Errorf("archiver: bucket %s: %w", contract.BucketArchiveKeys, err)
	}
	st, err := js.Stream(ctx, contract.StreamArchive)
	if err != nil {
		return nil, fmt.Errorf("archiver: stream %s: %w", contract.StreamArchive, err)
	}
	window := st.CachedInfo().Config.Duplicates - windowMargin
	if window <= 0 {
		return nil, fmt.Errorf("archiver: stream %s: duplicate window %s must exceed %s", contract.StreamArchive, st.CachedInfo().Config.Duplicates, windowMargin)
	}
	s.outcomes = &outcomes{js: js, kv: kv, window: window, now: func() time.Time { return s.now() }}
	if s.sources, err = newSources(cfg, s.httpCfg); err != nil {
		return nil, err
	}
	if err := store.EnsureReady(ctx); err != nil {
		return nil, fmt.Errorf("archiver: sink: %w", err)
	}
	if s.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	if s.dead, err = deadletter.NewRecorder(js, reg, ConsumerName, DueConsumerName, RetryConsumerName); err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	return s, nil
}

// Run works on the archiver's three consumers until ctx ends: task results
// (INGRESS > archiver), retries that fell due (ARCHIVER_TIMERS >
// archiver-due) and operators' retry requests (ARCHIVER_RETRY >
// archiver-retry). Their images are queued per account and run by
// archive.workers workers, round-robin across accounts, at most half of
// them on one source host.
//
// When ctx ends Run drains (package drain): it stops pulling, hands the
// messages whose images have not started back to JetStream (another replica
// takes them at once), lets the images in flight finish for at most
// Config.DrainTimeout (then cancels them; their messages are delivered
// again), and returns. It returns an error only when it cannot start.
func (s *Service) Run(ctx context.Context) error {
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopWatch, err := s.watchDead()
	if err != nil {
		return err
	}
	defer stopWatch()
	d := newDispatcher(s.workers / 2)
	var workers, pulls sync.WaitGroup
	for range s.workers {
		workers.Go(func() {
			for {
				j, ok := d.take(work)
				if !ok {
					return
				}
				err := j.run(work)
				d.done(j)
				s.finished(j.msg, err)
			}
		})
	}
	for _, in := range s.intakes {
		pulls.Go(func() { s.pull(ctx, work, in, d) })
	}
	stats := make(chan struct{})
	go func() {
		defer close(stats)
		s.watchStats(ctx)
	}()

	<-ctx.Done()
	// Nothing new starts; what was queued goes back to JetStream.
	for _, j := range d.close() {
		s.finished(j.msg, errStopping)
	}
	drain.Wait(s.drain, cancelWork, pulls.Wait, workers.Wait)
	<-stats
	return nil
}

// watchDead records the messages of the three consumers whose last
// delivery nobody settled — a replica stopped holding it, or could not
// record it — from the server's max-deliveries advisories, which every
// replica receives in one queue group (deadletter.Recorder.Watch), and
// logs each. The returned stop ends it.
func (s *Service) watchDead() (stop func(), err error) {
	ds := make([]deadletter.Durable, 0, len(s.intakes))
	for _, in := range s.intakes {
		ds = append(ds, deadletter.Durable{Stream: in.stream, Name: in.name})
	}
	stop, err = s.dead.Watch(s.nc, ds, func(r deadletter.Record, err error) {
		ev := s.log.Error().Str("consumer", r.Consumer).Str("stream", r.Stream).Uint64("seq", r.Sequence).
			Uint64("deliveries", r.Deliveries).Str("reason", r.Reason)
		if r.Subject != "" {
			ev = ev.Str("subject", r.Subject)
		}
		if err != nil {
			ev.Err(err).Msg("archiver dead letter not recorded")
			return
		}
		ev.Msg("archiver dead letter")
	})
	if err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	return stop, nil
}

// watchStats reads, until ctx ends, the number of images waiting for a
// retry and the consumers' pending messages into the gauges.
func (s *Service) watchStats(ctx context.Context) {
	t := time.NewTicker(s.stats)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if info, err := s.timers.Info(rctx); err == nil {
			s.metrics.waiting.Set(float64(info.State.Msgs))
		}
		for _, in := range s.intakes {
			if info, err := in.cons.Info(rctx); err == nil {
				s.metrics.pending.WithLabelValues(in.name).Set(float64(info.NumPending))
				s.metrics.ackPending.WithLabelValues(in.name).Set(float64(info.NumAckPending))
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
