package aggregator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

type metrics struct {
	messages  *prometheus.CounterVec
	jobs      *prometheus.CounterVec
	conflicts prometheus.Counter
	commits   prometheus.Counter
	skipped   prometheus.Counter
	armed     prometheus.Counter
	fired     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "aggregator", Name: "messages_total",
			Help: "Messages handled, by source (ingress, timer) and outcome (applied, done, wait, error).",
		}, []string{"source", "outcome"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "aggregator", Name: "jobs_published_total",
			Help: "Job records published, by closed_by and whether JOBS already had them (duplicate).",
		}, []string{"closed_by", "duplicate"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "aggregator", Name: "state_conflicts_total",
			Help: "Compare-and-set conflicts on job state (another replica or a timer wrote first).",
		}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "aggregator", Name: "group_commits_total",
			Help: "State writes that applied INGRESS messages (one per group of a key's messages); messages_total{source=\"ingress\",outcome=\"applied\"} over this is the mean group size.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "aggregator", Name: "unreadable_total",
			Help: "INGRESS messages whose body could not be read as a task result.",
		}),
		armed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "aggregator", Name: "timers_armed_total",
			Help: "Idle-timeout schedules published.",
		}),
		fired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sdevents", Subsystem: "aggregator", Name: "timers_handled_total",
			Help: "Fired idle-timeout timers that changed a job state.",
		}),
	}
	reg.MustRegister(m.messages, m.jobs, m.conflicts, m.commits, m.skipped, m.armed, m.fired)
	return m
}

var outcomeNames = map[outcome]string{ackApplied: "applied", ackDone: "done", nakWait: "wait", nakError: "error"}

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
	}
	m.jobs.WithLabelValues(string(r.ClosedBy), d).Inc()
}
