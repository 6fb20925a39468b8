package aggregator

import (
	"cmp"
	"context"
	"errors"
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
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// pullExpiry bounds every pull request of the aggregator's consumers.
const pullExpiry = 5 * time.Second

// ConsumerName is the durable INGRESS consumer the aggregator reads
// (streams/ingress.yaml); its filter decides which messages are read.
const ConsumerName = "aggregator"

// Service is the aggregator. Build it with New and run it with Run; any
// number of replicas may run against the same streams.
type Service struct {
	cfg     jobs.Config
	drain   time.Duration // Config.DrainTimeout
	nc      *nats.Conn
	js      jetstream.JetStream
	store   stateStore
	facts   jetstream.Stream
	lookup  lookup
	durable jetstream.Consumer
	due     jetstream.Consumer
	log     zerolog.Logger
	metrics *metrics
	opts    options

	// ingressBudget and dueBudget are the consumers' delivery budgets;
	// dead records the messages given up on (dead.go).
	ingressBudget, dueBudget deadletter.Budget
	dead                     *deadletter.Recorder

	index *index
	// ioctx bounds the I/O of the messages Run handles; Run cancels it
	// when they outlast its drain limit.
	ioctx  context.Context
	stopIO context.CancelFunc
	cache  stateCache

	// lanes holds, per key token, the messages waiting for the key's lane
	// (worker.go); slots bounds how many lanes run at once.
	lanesMu      sync.Mutex
	lanes        map[string]*lane
	stopping     bool
	slots        chan struct{}
	lanesRunning sync.WaitGroup
}

type options struct {
	workers     int
	timerMargin time.Duration
	opTimeout   time.Duration
	maxWindow   int
	cacheSize   int
	gaugesEvery time.Duration
	log         zerolog.Logger
	hooks       hooks
}

// Option changes a Service built by New.
type Option func(*options)

// WithLogger sets the logger; by default nothing is logged.
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithWorkers sets how many keys are handled concurrently (default 256).
// Each key's messages are handled one group at a time, in a single state
// write, whatever this number.
func WithWorkers(n int) Option { return func(o *options) { o.workers = max(n, 1) } }

// WithTimerMargin sets how long after a job's deadline its idle-timeout
// timer fires (default 2 s, plus rounding to the second). The margin absorbs
// clock differences between the servers that stamp INGRESS messages and
// fire timers.
func WithTimerMargin(d time.Duration) Option { return func(o *options) { o.timerMargin = max(d, 0) } }

// hooks let tests inject faults; production uses the zero value.
type hooks struct {
	onCommit func(seq uint64)
	onAck    func(m jetstream.Msg) error
	onApply  func(seq uint64) error
	onFire   func(token string) error
}

// fire runs before a fired timer of key token is handled; an error fails
// it.
func (h hooks) fire(token string) error {
	if h.onFire != nil {
		return h.onFire(token)
	}
	return nil
}

// apply runs before an INGRESS message is applied; an error fails it.
func (h hooks) apply(seq uint64) error {
	if h.onApply != nil {
		return h.onApply(seq)
	}
	return nil
}

func (h hooks) beforeCommit(seq uint64) {
	if h.onCommit != nil {
		h.onCommit(seq)
	}
}

func (h hooks) ack(m jetstream.Msg) error {
	if h.onAck != nil {
		return h.onAck(m)
	}
	return m.Ack()
}

// New builds the aggregator over the JetStream context of an open NATS
// connection, which should bound the wait for the acks of asynchronous
// publishes (jetstream.WithPublishAsyncTimeout, as the binary's does): a
// fact published to a stream leader that died is never acknowledged. The
// streams must have been applied (streams.Apply). reg receives the
// aggregator's metrics. It fails with jobs.ErrInvalidConfig
// for an unusable cfg, and when a record of cfg.Jobs.MaxRecordBytes would
// not fit in the server's max_payload.
func New(ctx context.Context, cfg Config, js jetstream.JetStream, reg prometheus.Registerer, opts ...Option) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aggregator: %w", err)
	}
	cfg = cfg.withDefaults()
	jcfg := cfg.Jobs
	nc := js.Conn()
	if rec, room := cmp.Or(jcfg.MaxRecordBytes, jobs.DefaultMaxRecordBytes), nc.MaxPayload()-headerRoom; int64(rec) > room {
		return nil, fmt.Errorf("aggregator: %w: max_record_bytes %d does not fit in the server's max_payload %d",
			jobs.ErrInvalidConfig, rec, nc.MaxPayload())
	}
	o := options{workers: 256, timerMargin: 2 * time.Second, opTimeout: 10 * time.Second,
		maxWindow: 1 << 18, cacheSize: 1 << 17, gaugesEvery: 10 * time.Second, log: zerolog.Nop()}
	for _, opt := range opts {
		opt(&o)
	}
	kv, err := js.KeyValue(ctx, contract.BucketAggregatorState)
	if err != nil {
		return nil, fmt.Errorf("aggregator: state bucket: %w", err)
	}
	facts, err := js.Stream(ctx, contract.StreamAggregatorFacts)
	if err != nil {
		return nil, fmt.Errorf("aggregator: fact stream: %w", err)
	}
	durable, err := js.Consumer(ctx, contract.StreamIngress, ConsumerName)
	if err != nil {
		return nil, fmt.Errorf("aggregator: consumer %s: %w", ConsumerName, err)
	}
	due, err := js.Consumer(ctx, contract.StreamAggregatorTimers, dueConsumer)
	if err != nil {
		return nil, fmt.Errorf("aggregator: consumer %s: %w", dueConsumer, err)
	}
	dead, err := deadletter.NewRecorder(js, reg, ConsumerName, dueConsumer)
	if err != nil {
		return nil, fmt.Errorf("aggregator: %w", err)
	}
	return &Service{
		cfg: jcfg, drain: cfg.DrainTimeout, nc: nc, js: js, store: stateStore{kv: kv, js: js}, facts: facts,
		lookup:  lookup{nc: nc, quotaLookback: cfg.CreditLookback + creditLookbackMargin},
		durable: durable, due: due, log: o.log, metrics: newMetrics(reg), opts: o,
		ingressBudget: deadletter.BudgetOf(durable.CachedInfo().Config),
		dueBudget:     deadletter.BudgetOf(due.CachedInfo().Config),
		dead:          dead,
		cache:         stateCache{size: o.cacheSize}, lanes: map[string]*lane{}, slots: make(chan struct{}, o.workers),
	}, nil
}

// Run consumes INGRESS and the fired timers until ctx ends, then drains
// (package drain): it stops fetching and handles the messages it holds for
// at most Config.DrainTimeout (then cancels their I/O: they are delivered
// again), and returns. It returns an error only when it cannot start. Run
// may be called once.
func (s *Service) Run(ctx context.Context) error {
	s.ioctx, s.stopIO = context.WithCancel(context.WithoutCancel(ctx))
	defer s.stopIO()
	startCtx, cancel := context.WithTimeout(s.ioctx, s.opts.opTimeout)
	idx, err := newIndex(startCtx, s.js, s.durable, s.cfg, s.opts.maxWindow)
	cancel()
	if err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	s.index = idx
	idxCtx, stopIndex := context.WithCancel(s.ioctx)
	var idxDone sync.WaitGroup
	idxDone.Go(func() {
		idx.run(idxCtx, func(err error) { s.log.Warn().Err(err).Msg("aggregator key index restarts") })
	})
	defer func() { stopIndex(); idxDone.Wait() }()
	gaugesCtx, stopGauges := context.WithCancel(s.ioctx)
	var gaugesDone sync.WaitGroup
	gaugesDone.Go(func() { s.watchBacklog(gaugesCtx) })
	defer func() { stopGauges(); gaugesDone.Wait() }()
	stopWatch, err := s.watchDead()
	if err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	defer stopWatch()

	onErr := jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			s.log.Debug().Err(err).Msg("aggregator consumer")
		}
	})
	// Short pulls: a pull request lost with a consumer leader that died is
	// renewed within seconds, not after the default 30 s.
	ingress, err := s.durable.Consume(s.dispatchIngress, onErr, jetstream.PullMaxMessages(512), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("aggregator: consume %s: %w", contract.StreamIngress, err)
	}
	timers, err := s.due.Consume(s.dispatchDue, onErr, jetstream.PullMaxMessages(64), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		ingress.Stop()
		s.stopLanes()
		return fmt.Errorf("aggregator: consume %s: %w", contract.StreamAggregatorTimers, err)
	}
	<-ctx.Done()
	ingress.Drain()
	timers.Drain()
	drain.Wait(s.drain, func() { ingress.Stop(); timers.Stop(); s.stopIO() },
		func() { <-ingress.Closed() }, func() { <-timers.Closed() }, s.stopLanes)
	return nil
}

// dispatchIngress routes an INGRESS message to the lane of its key, or
// acknowledges it when it takes no part in jobs.
func (s *Service) dispatchIngress(m jetstream.Msg) {
	k, kind, ok := keyOf(m.Subject(), m.Headers(), s.cfg)
	if !ok {
		s.metrics.handled(false, ackDone)
		_ = m.Ack()
		return
	}
	s.enqueue(work{msg: m, token: k.Token(), key: k, kind: kind})
}

// dispatchDue routes a fired timer to the lane of its key.
func (s *Service) dispatchDue(m jetstream.Msg) {
	tok, ok := dueToken(m.Subject())
	if !ok {
		_ = m.Ack()
		return
	}
	s.enqueue(work{msg: m, token: tok, due: true})
}
