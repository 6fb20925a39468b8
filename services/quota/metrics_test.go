package quota_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/quotatest"
)

// backlogGauge returns the value of the gauge name for the quota-expiry
// consumer, or -1 when the scrape has none.
func backlogGauge(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer" && l.GetValue() == "quota-expiry" {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// TestExpiryConsumerBacklogMetrics: the quota-expiry consumer's backlog is
// on /metrics as the server has it at the scrape: fired timers not yet
// delivered while no replica runs, none once a replica has handled them.
// The metrics pass promlint.
func TestExpiryConsumerBacklogMetrics(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	for range 3 { // malformed timers: terminated when delivered
		if _, err := js.Publish(context.Background(), "sdevents.quota.due.a_backlog", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	svc, err := quota.New(context.Background(), quotatest.Config(), js, reg)
	if err != nil {
		t.Fatal(err)
	}
	const pending, ackPending = "sdevents_quota_consumer_pending_messages", "sdevents_quota_consumer_ack_pending_messages"
	// The server counts a consumer's pending messages a moment after the
	// stream stored them: poll.
	natstest.Eventually(t, 10*time.Second, "3 pending, none delivered", func() bool {
		return backlogGauge(t, reg, pending) == 3 && backlogGauge(t, reg, ackPending) == 0
	})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	natstest.Eventually(t, 10*time.Second, "the backlog handled", func() bool {
		return backlogGauge(t, reg, pending) == 0 && backlogGauge(t, reg, ackPending) == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
