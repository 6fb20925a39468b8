package archiver

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the archiver's Prometheus metrics (sdevents_archiver_*).
type metrics struct {
	bytes      prometheus.Counter
	retries    prometheus.Counter
	stored     prometheus.Counter
	failed     prometheus.Counter
	dropped    prometheus.Counter
	fetch      *prometheus.HistogramVec
	waiting    prometheus.Gauge
	pending    *prometheus.GaugeVec
	ackPending *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "sdevents", Subsystem: "archiver", Name: name, Help: help}
	}
	m := &metrics{
		bytes: prometheus.NewCounter(prometheus.CounterOpts(opts("stored_bytes_total",
			"Bytes of images fetched and stored by this replica."))),
		retries: prometheus.NewCounter(prometheus.CounterOpts(opts("transient_failures_total",
			"Transient failures of images handed to the retry schedule."))),
		stored: prometheus.NewCounter(prometheus.CounterOpts(opts("images_stored_total",
			"Images whose stored event this replica recorded."))),
		failed: prometheus.NewCounter(prometheus.CounterOpts(opts("images_failed_total",
			"Images whose failed event this replica recorded (permanent failures, or sources that expired)."))),
		dropped: prometheus.NewCounter(prometheus.CounterOpts(opts("images_dropped_total",
			"Images not archived because their task result listed more than archive.max_images_per_task."))),
		fetch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sdevents", Subsystem: "archiver", Name: "fetch_duration_seconds",
			Help:    "Time to fetch and store one image, by outcome of the attempt (stored, failed, retry).",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"outcome"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts(opts("retry_waiting_images",
			"Images (and retry requests) waiting in ARCHIVER_TIMERS for another try, scheduled or due."))),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("consumer_pending_messages",
			"Messages of an archiver consumer not yet delivered to any replica.")), []string{"consumer"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("consumer_ack_pending_messages",
			"Messages of an archiver consumer delivered and being worked on by the replicas.")), []string{"consumer"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.bytes, m.retries, m.stored, m.failed, m.dropped, m.fetch, m.waiting, m.pending, m.ackPending} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("archiver: metrics: %w", err)
			}
		}
	}
	return m, nil
}
