package archiver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/fetch"
	"github.com/sdevents/sdevents/streams"
)

// ConsumerName is the durable INGRESS consumer shared by every replica.
const ConsumerName = "archiver"

// KeysBucket is the KV bucket holding one entry per image outcome
// (streams/archive-keys.yaml; see ledger).
const KeysBucket = "ARCHIVE_KEYS"

// DefaultDrainTimeout bounds how long Run waits for in-flight images after
// its context ends before it cancels them (they are delivered again).
const DefaultDrainTimeout = 15 * time.Second

// Service is the archiver. Build it with New and run it with Run; several
// replicas may run against the same JetStream, sharing the work.
type Service struct {
	js       jetstream.JetStream
	cons     jetstream.Consumer
	ackWait  time.Duration
	retries  jetstream.Consumer
	retryAck time.Duration
	store    BlobStore
	sources  sources
	ledger   *ledger
	workers  int
	lifetime time.Duration
	backoff  backoff
	drain    time.Duration
	now      func() time.Time
	log      zerolog.Logger
	metrics  *metrics
	httpCfg  func(*fetch.HTTPConfig)
}

// Option changes a Service built by New.
type Option func(*Service)

// WithStore replaces the sink built from archive.dir / archive.s3.
func WithStore(b BlobStore) Option { return func(s *Service) { s.store = b } }

// WithHTTPConfig adjusts the http(s) source's configuration (timeouts, TLS,
// resolver) after it was filled from the archive configuration.
func WithHTTPConfig(f func(*fetch.HTTPConfig)) Option { return func(s *Service) { s.httpCfg = f } }

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithBackoff sets the redelivery delays after transient failures (defaults
// DefaultBackoffMin and DefaultBackoffMax).
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(s *Service) { s.backoff = backoff{min: minDelay, max: max(minDelay, maxDelay)} }
}

// WithDrainTimeout sets how long Run lets in-flight images finish after its
// context ended (default DefaultDrainTimeout).
func WithDrainTimeout(d time.Duration) Option { return func(s *Service) { s.drain = d } }

// WithLogger sets the logger (default: none).
func WithLogger(l zerolog.Logger) Option { return func(s *Service) { s.log = l } }

// New builds the archiver over an open NATS connection. The streams, the
// archiver consumer and the ARCHIVE_KEYS bucket must have been applied; the
// sink is made ready (bucket or directory created). reg receives the
// archiver metrics.
func New(ctx context.Context, cfg config.Config, nc *nats.Conn, reg prometheus.Registerer, opts ...Option) (*Service, error) {
	s := &Service{
		workers:  max(cfg.Archive.Workers, 1),
		lifetime: cfg.Archive.URLLifetime.D(),
		backoff:  backoff{min: DefaultBackoffMin, max: DefaultBackoffMax},
		drain:    DefaultDrainTimeout,
		now:      time.Now,
		log:      zerolog.Nop(),
	}
	for _, o := range opts {
		o(s)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	if s.cons, err = js.Consumer(ctx, streams.Ingress, ConsumerName); err != nil {
		return nil, fmt.Errorf("archiver: consumer %s: %w", ConsumerName, err)
	}
	s.ackWait = s.cons.CachedInfo().Config.AckWait
	if s.retries, err = js.Consumer(ctx, RetryStream, RetryConsumerName); err != nil {
		return nil, fmt.Errorf("archiver: consumer %s/%s: %w", RetryStream, RetryConsumerName, err)
	}
	s.retryAck = s.retries.CachedInfo().Config.AckWait
	s.js = js
	kv, err := js.KeyValue(ctx, KeysBucket)
	if err != nil {
		return nil, fmt.Errorf("archiver: bucket %s: %w", KeysBucket, err)
	}
	st, err := js.Stream(ctx, streams.Archive)
	if err != nil {
		return nil, fmt.Errorf("archiver: stream %s: %w", streams.Archive, err)
	}
	window := st.CachedInfo().Config.Duplicates - windowMargin
	if window <= 0 {
		return nil, fmt.Errorf("archiver: stream %s: duplicate window %s must exceed %s", streams.Archive, st.CachedInfo().Config.Duplicates, windowMargin)
	}
	s.ledger = &ledger{js: js, kv: kv, window: window, now: func() time.Time { return s.now() }}
	if s.sources, err = newSources(cfg.Archive, s.httpCfg); err != nil {
		return nil, err
	}
	if s.store == nil {
		if s.store, err = NewStore(ctx, cfg.Archive); err != nil {
			return nil, err
		}
	}
	if s.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	return s, nil
}

// Run consumes the archiver consumer of INGRESS and the archiver-retry
// consumer of ARCHIVER_RETRY (operators' retry requests) until ctx ends,
// archiving up to archive.workers messages at a time. Then it stops pulling
// from both, lets the messages in flight finish (for at most the drain
// timeout, after which they are cancelled and delivered again later) and
// returns. It returns an error only when consuming cannot start.
func (s *Service) Run(ctx context.Context) error {
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	slots := make(chan struct{}, s.workers)
	var jobs inflight
	consume := func(cons jetstream.Consumer, ackWait time.Duration, handle func(context.Context, jetstream.Msg)) (jetstream.ConsumeContext, error) {
		return cons.Consume(func(msg jetstream.Msg) {
			stop := s.keepAlive(msg, ackWait)
			slots <- struct{}{} // blocks the delivery while every worker is busy
			started := jobs.start(func() {
				defer func() { <-slots }()
				defer stop()
				handle(work, msg)
			})
			if !started { // delivered after shutdown began: someone else's now
				<-slots
				stop()
				_ = msg.Nak()
			}
		},
			jetstream.PullMaxMessages(s.workers),
			// Short pulls: a pull request a failing consumer leader drops is
			// renewed within seconds, not after the default 30 s.
			jetstream.PullExpiry(5*time.Second),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if !errors.Is(err, jetstream.ErrConnectionClosed) {
					s.log.Warn().Err(err).Msg("archiver consume")
				}
			}),
		)
	}
	cc, err := consume(s.cons, s.ackWait, s.handle)
	if err != nil {
		return fmt.Errorf("archiver: consume: %w", err)
	}
	// Retry requests share the workers with INGRESS messages.
	rc, err := consume(s.retries, s.retryAck, s.handleRetry)
	if err != nil {
		cc.Stop()
		<-cc.Closed()
		return fmt.Errorf("archiver: consume retries: %w", err)
	}
	<-ctx.Done()
	cc.Drain()
	rc.Drain()
	deadline := time.NewTimer(s.drain)
	defer deadline.Stop()
	closed := make(chan struct{})
	go func() {
		<-cc.Closed()
		<-rc.Closed()
		close(closed)
	}()
	select {
	case <-closed:
	case <-deadline.C:
		cancelWork()
		<-closed
	}
	done := make(chan struct{})
	go func() {
		jobs.closeAndWait()
		close(done)
	}()
	select {
	case <-done:
	case <-deadline.C:
		cancelWork()
		<-done
	}
	return nil
}

// inflight tracks the messages being worked on; once closed it starts no
// more.
type inflight struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// start runs f in a goroutine unless the group is closed.
func (g *inflight) start(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Go(f)
	return true
}

// closeAndWait stops new starts and waits for the running ones.
func (g *inflight) closeAndWait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// keepAlive tells JetStream every third of the ack wait that msg is still
// being worked on, until stop is called.
func (s *Service) keepAlive(msg jetstream.Msg, ackWait time.Duration) (stop func()) {
	every := ackWait / 3
	if every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

// handle archives every image of one INGRESS message, then acknowledges it,
// or asks for a redelivery after a backoff when an image hit a transient
// failure while its source may still be valid. It logs once per message.
func (s *Service) handle(ctx context.Context, msg jetstream.Msg) {
	start := time.Now()
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Error().Err(err).Str("subject", msg.Subject()).Msg("archiver: not a JetStream message")
		return
	}
	t := parseTask(msg.Subject(), msg.Headers(), msg.Data(), meta.Timestamp)
	attempts := int(meta.NumDelivered)
	var retryErr error
	settled := 0
	for _, img := range t.Images {
		if err := s.archive(ctx, t, img, attempts); err != nil {
			s.metrics.retries.Inc()
			if retryErr == nil {
				retryErr = err
			}
			continue
		}
		settled++
	}
	ev := s.log.Info()
	if retryErr != nil {
		ev = s.log.Warn().Err(retryErr)
	}
	ev = ev.Str("subject", msg.Subject()).Uint64("seq", meta.Sequence.Stream).Int("attempt", attempts).
		Str("account", t.Account).Str("task_id", t.TaskID).Int("images", len(t.Images)).Int("settled", settled).
		Dur("took", time.Since(start))
	if len(t.Problems) > 0 {
		ev = ev.Strs("problems", t.Problems)
	}
	if retryErr == nil {
		if err := msg.Ack(); err != nil {
			ev = ev.AnErr("ack", err)
		}
		ev.Msg("archived")
		return
	}
	delay := s.backoff.delay(attempts, s.now(), s.deadline(t))
	if ctx.Err() != nil {
		delay = 0 // shutting down: let another replica take it now
	}
	_ = msg.NakWithDelay(delay)
	ev.Dur("retry_in", delay).Msg("archive retry")
}

type metrics struct {
	bytes   prometheus.Counter
	retries prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "archiver", Name: "stored_bytes_total",
			Help: "Bytes of images archived.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "archiver", Name: "transient_failures_total",
			Help: "Images whose message was delivered again after a transient failure.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.bytes, m.retries} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("archiver: metrics: %w", err)
			}
		}
	}
	return m, nil
}
