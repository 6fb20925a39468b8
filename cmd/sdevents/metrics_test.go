package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// metricsList is the list of the metrics a process registers, read by the
// deploy tests: every metric the dashboard and the alert rules query must
// be in it.
var metricsList = filepath.Join("..", "..", "deploy", "components", "monitoring", "metrics.txt")

const metricsListHeader = `# The metrics a process of ` + "`sdevents run`" + ` registers: every service's, the
# HTTP server's, the process's own and the Go runtime's, one per line with its
# labels. A single-service process registers a part of them. Kept equal to the
# process's registry by TestMetricsList (cmd/sdevents); rewrite it with
#   SDEVENTS_UPDATE_METRICS=1 go test -run TestMetricsList ./cmd/sdevents
# The deploy tests check that the dashboard and the alert rules query only
# these (histograms with their _bucket, _sum and _count series).
`

// TestMetricsList builds the process of `sdevents run` from the example
// configuration and compares the descriptors its registry holds — vectors
// without series included, which a scrape would not show — with
// deploy/components/monitoring/metrics.txt.
func TestMetricsList(t *testing.T) {
	t.Parallel()
	p, cleanup, err := build(context.Background(), exampleConfig(t, t.TempDir()), runAll())
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	var lines []string
	for d := range describe(p.reg) {
		name, labels, err := parseDesc(d.String())
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(labels)
		lines = append(lines, strings.TrimSpace(name+" "+strings.Join(labels, ",")))
	}
	slices.Sort(lines)
	want := metricsListHeader + strings.Join(lines, "\n") + "\n"
	if os.Getenv("SDEVENTS_UPDATE_METRICS") == "1" {
		if err := os.WriteFile(metricsList, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(metricsList)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s differs from the registry: rewrite it with SDEVENTS_UPDATE_METRICS=1 go test -run TestMetricsList, then check the dashboard and the alert rules (deploy tests)\nregistry:\n%s", metricsList, want)
	}
}

// describe returns every descriptor reg holds.
func describe(reg *prometheus.Registry) func(yield func(*prometheus.Desc) bool) {
	return func(yield func(*prometheus.Desc) bool) {
		ch := make(chan *prometheus.Desc)
		go func() {
			reg.Describe(ch)
			close(ch)
		}()
		for d := range ch {
			if !yield(d) {
				for range ch {
				}
				return
			}
		}
	}
}

// parseDesc reads the name and the label names (constant and variable) of a
// descriptor from its String form, which client_golang prints as
// Desc{fqName: %q, help: %q, unit: %q, constLabels: {name=%q,...},
// variableLabels: {name,...}}: a descriptor has no accessors.
func parseDesc(s string) (name string, labels []string, err error) {
	bad := fmt.Errorf("unexpected descriptor %s", s)
	rest, ok := strings.CutPrefix(s, "Desc{fqName: ")
	quoted := func(prefix string) (string, bool) {
		r, ok := strings.CutPrefix(rest, prefix)
		if !ok {
			return "", false
		}
		q, err := strconv.QuotedPrefix(r)
		if err != nil {
			return "", false
		}
		rest = r[len(q):]
		v, err := strconv.Unquote(q)
		return v, err == nil
	}
	if !ok {
		return "", nil, bad
	}
	if name, ok = quoted(""); !ok {
		return "", nil, bad
	}
	if _, ok := quoted(", help: "); !ok {
		return "", nil, bad
	}
	if _, ok := quoted(", unit: "); !ok {
		return "", nil, bad
	}
	if rest, ok = strings.CutPrefix(rest, ", constLabels: {"); !ok {
		return "", nil, bad
	}
	for !strings.HasPrefix(rest, "}") {
		rest = strings.TrimPrefix(rest, ",")
		l, r, ok := strings.Cut(rest, "=")
		if !ok {
			return "", nil, bad
		}
		labels = append(labels, l)
		rest = r
		if _, ok := quoted(""); !ok {
			return "", nil, bad
		}
	}
	vars, ok := strings.CutPrefix(rest, "}, variableLabels: {")
	if !ok {
		return "", nil, bad
	}
	if vars, ok = strings.CutSuffix(vars, "}}"); !ok {
		return "", nil, bad
	}
	for _, v := range strings.Split(vars, ",") {
		if v = strings.TrimSuffix(strings.TrimPrefix(v, "c("), ")"); v != "" {
			labels = append(labels, v)
		}
	}
	return name, labels, nil
}
