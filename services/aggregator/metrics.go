package aggregator

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

type metrics struct {
	messages     *prometheus.CounterVec
	jobs         *prometheus.CounterVec
	conflicts    prometheus.Counter
	commits      prometheus.Counter
	skipped      prometheus.Counter
	armed        prometheus.Counter
	fired        prometheus.Counter
	factsMissing prometheus.Counter
	purgeFailed  prometheus.Counter
	jobTasks     prometheus.Histogram
	openJobs     prometheus.Gauge
	pending      *prometheus.GaugeVec
	ackPending   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "sdevents", Subsystem: "aggregator", Name: name, Help: help}
	}
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts(opts("messages_total",
			"Messages handled, by source (ingress, timer) and outcome (applied, done, wait, error, dead).")),
			[]string{"source", "outcome"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts(opts("jobs_published_total",
			"Job records published, by closed_by and whether JOBS already had them (duplicate).")),
			[]string{"closed_by", "duplicate"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts(opts("state_conflicts_total",
			"Compare-and-set conflicts on job state (another replica or a timer wrote first)."))),
		commits: prometheus.NewCounter(prometheus.CounterOpts(opts("group_commits_total",
			"State writes that applied INGRESS messages (one per group of a key's messages); messages_total{source=\"ingress\",outcome=\"applied\"} over this is the mean group size."))),
		skipped: prometheus.NewCounter(prometheus.CounterOpts(opts("unreadable_total",
			"INGRESS messages whose body could not be read as a task result."))),
		armed: prometheus.NewCounter(prometheus.CounterOpts(opts("timers_armed_total",
			"Idle-timeout schedules published."))),
		fired: prometheus.NewCounter(prometheus.CounterOpts(opts("timers_handled_total",
			"Fired idle-timeout timers that changed a job state."))),
		factsMissing: prometheus.NewCounter(prometheus.CounterOpts(opts("facts_missing_total",
			"Jobs closed without some of their facts (AGGREGATOR_FACTS lost them)."))),
		purgeFailed: prometheus.NewCounter(prometheus.CounterOpts(opts("fact_purge_failures_total",
			"Closed jobs whose facts could not be purged (the stream's max_age removes them)."))),
		jobTasks: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sdevents", Subsystem: "aggregator", Name: "job_tasks",
			Help:    "Tasks per job record published (first publication of each job).",
			Buckets: []float64{0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}),
		openJobs: prometheus.NewGauge(prometheus.GaugeOpts(opts("open_jobs",
			"Open jobs: the sum over every key's state of its open jobs, read every 10 s; the same value on every replica."))),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("consumer_pending",
			"Messages not yet delivered, by consumer (aggregator, aggregator-due), read every 10 s.")), []string{"consumer"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("consumer_ack_pending",
			"Messages delivered and not yet acknowledged, by consumer, read every 10 s.")), []string{"consumer"}),
	}
	reg.MustRegister(m.messages, m.jobs, m.conflicts, m.commits, m.skipped, m.armed, m.fired,
		m.factsMissing, m.purgeFailed, m.jobTasks, m.openJobs, m.pending, m.ackPending)
	return m
}

var outcomeNames = map[outcome]string{ackApplied: "applied", ackDone: "done", nakWait: "wait", nakError: "error", termDead: "dead"}

func (m *metrics) handled(due bool, out outcome) {
	src := "ingress"
	if due {
		src = "timer"
	}
	m.messages.WithLabelValues(src, outcomeNames[out]).Inc()
}

func (m *metrics) published(r *jobs.Record, dup bool) {
	d := "false"
	if dup {
		d = "true"
	} else {
		m.jobTasks.Observe(float64(len(r.Tasks)))
	}
	m.jobs.WithLabelValues(string(r.ClosedBy), d).Inc()
}

// watchBacklog updates the gauges read from the server (open jobs,
// consumer backlogs) until ctx ends; a failed read keeps the last values.
func (s *Service) watchBacklog(ctx context.Context) {
	t := time.NewTicker(s.opts.gaugesEvery)
	defer t.Stop()
	for {
		s.readBacklog(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) readBacklog(ctx context.Context) {
	countCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if n, err := s.store.countOpenJobs(countCtx); err == nil {
		s.metrics.openJobs.Set(float64(n))
	}
	ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for name, c := range map[string]jetstream.Consumer{ConsumerName: s.durable, dueConsumer: s.due} {
		if info, err := c.Info(ctx); err == nil {
			s.metrics.pending.WithLabelValues(name).Set(float64(info.NumPending))
			s.metrics.ackPending.WithLabelValues(name).Set(float64(info.NumAckPending))
		}
	}
}
