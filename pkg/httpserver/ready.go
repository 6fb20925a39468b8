package httpserver

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// readyTimeout bounds one evaluation of the readiness checks, for /readyz
// and for a scrape of sdevents_ready.
const readyTimeout = 2 * time.Second

// processCheck is the name under which a process failed for good (Fail)
// is reported: always present, whatever checks were added.
const processCheck = "process"

// evaluate runs every readiness check concurrently under
// ctx, and returns each one's result by name (nil: ready), with
// processCheck for Fail. Checks added under one name are one: not ready
// when any of them is not.
func (s *Server) evaluate(ctx context.Context) map[string]error {
	s.mu.Lock()
	checks := append([]namedCheck(nil), s.checks...)
	broken := s.broken
	s.mu.Unlock()
	// Concurrently, so that a check waiting for its deadline does not
	// starve the others of theirs.
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, ch := range checks {
		wg.Go(func() { errs[i] = ch.check(ctx) })
	}
	wg.Wait()
	out := map[string]error{processCheck: broken}
	for i, ch := range checks {
		if prev, seen := out[ch.name]; !seen || prev == nil {
			out[ch.name] = errs[i]
		}
	}
	return out
}

var readyDesc = prometheus.NewDesc("sdevents_ready",
	"Readiness of the process by check, evaluated at each scrape as /readyz evaluates it: 1 ready, 0 not; check=\"process\" is 0 once the process failed for good.",
	[]string{"check"}, nil)

// readiness is the collector of sdevents_ready: each scrape runs the
// checks of /readyz (at most readyTimeout) and reports one series per
// check. Check errors stay out of the metric: they may name addresses.
type readiness struct{ s *Server }

// Describe implements prometheus.Collector.
func (r readiness) Describe(ch chan<- *prometheus.Desc) { ch <- readyDesc }

// Collect implements prometheus.Collector.
func (r readiness) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for name, err := range r.s.evaluate(ctx) {
		v := 1.0
		if err != nil {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, v, name)
	}
}
