package quota

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// backlogTimeout bounds the read of the consumer's state at one scrape.
const backlogTimeout = 2 * time.Second

// backlog is the collector of the quota-expiry consumer's backlog:
// sdevents_quota_consumer_pending_messages (fired timers not yet delivered
// to any replica) and sdevents_quota_consumer_ack_pending_messages
// (delivered and not yet acknowledged), by consumer. Each scrape reads them
// from the server (one consumer info request, at most backlogTimeout); when
// the server does not answer, the scrape has neither. Every replica reports
// the same values.
type backlog struct {
	cons                jetstream.Consumer
	name                string
	pending, ackPending *prometheus.Desc
}

func newBacklog(cons jetstream.Consumer) *backlog {
	return &backlog{
		cons: cons,
		name: expiryDurable,
		pending: prometheus.NewDesc("sdevents_quota_consumer_pending_messages",
			"Messages of a quota consumer not yet delivered to any replica (fired expiry timers waiting), read at each scrape.",
			[]string{"consumer"}, nil),
		ackPending: prometheus.NewDesc("sdevents_quota_consumer_ack_pending_messages",
			"Messages of a quota consumer delivered and not yet acknowledged by the replicas, read at each scrape.",
			[]string{"consumer"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (b *backlog) Describe(ch chan<- *prometheus.Desc) {
	ch <- b.pending
	ch <- b.ackPending
}

// Collect implements prometheus.Collector.
func (b *backlog) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), backlogTimeout)
	defer cancel()
	info, err := b.cons.Info(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(b.pending, prometheus.GaugeValue, float64(info.NumPending), b.name)
	ch <- prometheus.MustNewConstMetric(b.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), b.name)
}
