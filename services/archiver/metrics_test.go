package archiver_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/archiver"
)

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

// metricValue returns the value of the counter or gauge name whose label
// has value, or -1 when there is none.
func metricValue(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
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
			if label != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == label && l.GetValue() == value }) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

// TestMetrics: the archiver's metrics pass promlint and tell what happened:
// images stored and failed, fetch durations by outcome, images waiting for
// a retry, the consumers' pending messages and their dead letters.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := newRegistry()
	at := time.Now()
	e.publishCallback("a_metrics", "ok", at, map[string]any{"success": true, "data": map[string]any{
		"generatedImageId": "g", "url": e.images.serve("/ok.png", pngOf(t, 3, 8, 8)), "type": "png",
	}})
	e.publishCallback("a_metrics", "gone", at, map[string]any{"success": true, "data": map[string]any{
		"generatedImageId": "g", "url": e.images.handle("/gone.png", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }), "type": "png",
	}})
	e.publishCallback("a_metrics", "down", at, map[string]any{"success": true, "data": map[string]any{
		"generatedImageId": "g", "url": e.images.handle("/down.png", unavailable), "type": "png",
	}})
	e.startWith(reg, archiver.WithBackoff(time.Hour, time.Hour), archiver.WithStatsInterval(50*time.Millisecond))
	natstest.Eventually(t, 30*time.Second, "one stored, one failed, one waiting", func() bool {
		return metricValue(t, reg, "sdevents_archiver_images_stored_total", "", "") == 1 &&
			metricValue(t, reg, "sdevents_archiver_images_failed_total", "", "") == 1 &&
			metricValue(t, reg, "sdevents_archiver_retry_waiting_images", "", "") == 1 &&
			metricValue(t, reg, "sdevents_archiver_consumer_ack_pending_messages", "consumer", archiver.ConsumerName) == 0 &&
			metricValue(t, reg, "sdevents_archiver_consumer_pending_messages", "consumer", archiver.ConsumerName) == 0
	})
	for outcome, want := range map[string]float64{"stored": 1, "failed": 1, "retry": 1} {
		if n := metricValue(t, reg, "sdevents_archiver_fetch_duration_seconds", "outcome", outcome); n != want {
			t.Errorf("fetch durations of outcome %s: %v, want %v", outcome, n, want)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "sdevents_archiver_") && mf.GetName() != deadletter.MetricName {
			t.Errorf("metric %s outside sdevents_archiver_", mf.GetName())
		}
	}
	// The dead letters are counted in the counter every service shares, one
	// series per consumer from the start.
	for _, c := range []string{archiver.ConsumerName, archiver.DueConsumerName, archiver.RetryConsumerName} {
		if n := metricValue(t, reg, deadletter.MetricName, "consumer", c); n != 0 {
			t.Errorf("dead letters of %s: %v, want 0", c, n)
		}
	}
}
