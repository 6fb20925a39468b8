package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

// The monitoring component's files.
const (
	monitoringDir      = "components/monitoring"
	rulesFile          = "prometheusrule.yaml"
	dashboardFile      = "sdevents-dashboard.json"
	dashboardConfigMap = "sdevents-dashboard"
	metricsFile        = "metrics.txt"
)

// targetLabels are the labels Prometheus gives every series of a target:
// instance and job always, the others when the prometheus-operator scrapes
// a pod through a ServiceMonitor.
var targetLabels = []string{"instance", "job", "namespace", "pod", "service", "endpoint", "container"}

// severities are the alerts' severity labels, most urgent first.
var severities = []string{"critical", "warning", "info"}

// exported reads metrics.txt: the metrics a process registers, by name,
// with their label names. TestMetricsList (cmd/sdevents) keeps the file
// equal to the registry of a process of `sdevents run`, built from the
// services' constructors; a descriptor does not say which metric is a
// histogram, so each name but a counter's (_total) also stands for its
// _bucket, _sum and _count.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, filepath.Join("deploy", monitoringDir, metricsFile))))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, ls, _ := strings.Cut(line, " ")
		out[name] = nil
		if ls != "" {
			out[name] = strings.Split(ls, ",")
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s lists no metric", metricsFile)
	}
	return out
}

// promql parses PromQL as Prometheus does.
var promql = parser.NewParser(parser.Options{})

// checkQuery parses expr and returns one error per metric it selects that
// no process exports, and per label it matches or groups by that neither
// the metric nor the target has.
func checkQuery(expr string, metrics map[string][]string) []error {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return []error{fmt.Errorf("%q: %w", expr, err)}
	}
	var errs []error
	// labelsOf returns the labels a selected series may have; ok is false
	// when no process exports the metric.
	labelsOf := func(name string) ([]string, bool) {
		if ls, ok := metrics[name]; ok {
			return append(slices.Clone(targetLabels), ls...), true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			// A counter (_total, as promlint wants it) is no histogram.
			if base, ok := strings.CutSuffix(name, suffix); ok && !strings.HasSuffix(base, "_total") {
				if ls, ok := metrics[base]; ok {
					ls = append(slices.Clone(targetLabels), ls...)
					if suffix == "_bucket" {
						ls = append(ls, "le")
					}
					return ls, true
				}
			}
		}
		return nil, false
	}
	selected := func(n parser.Node) []string { // the labels of the series under n
		var out []string
		parser.Inspect(n, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				ls, _ := labelsOf(selectorName(vs))
				out = append(out, ls...)
			}
			return nil
		})
		return out
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := selectorName(n)
			ls, ok := labelsOf(name)
			if !ok {
				errs = append(errs, fmt.Errorf("%q: no process exports %q (%s)", expr, name, metricsFile))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != model.MetricNameLabel && !slices.Contains(ls, m.Name) {
					errs = append(errs, fmt.Errorf("%q: %s has no label %q", expr, name, m.Name))
				}
			}
		case *parser.AggregateExpr:
			ls := selected(n.Expr)
			for _, g := range n.Grouping {
				if !slices.Contains(ls, g) {
					errs = append(errs, fmt.Errorf("%q: no series under the aggregation has the label %q", expr, g))
				}
			}
		}
		return nil
	})
	return errs
}

// selectorName is the metric name a selector selects: its name, or its
// __name__ equality matcher.
func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// TestAlertRules loads the rule groups of the PrometheusRule as Prometheus
// loads a rule file (rulefmt: strict fields, every expression and
// annotation template parsed), and checks that every alert has a severity,
// a summary and a description, queries only exported metrics and labels,
// and is explained in docs/operations.md.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	raw := readFile(t, filepath.Join("deploy", monitoringDir, rulesFile))
	var pr monitoringv1.PrometheusRule
	if err := decodeStrict(raw, &pr); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var doc struct {
		Spec yaml.Node `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	spec, err := yaml.Marshal(&doc.Spec)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(spec, false, model.LegacyValidation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatalf("%s holds no rule group", rulesFile)
	}
	metrics := exported(t)
	docs := operationsSection(t, "Dashboards and alerts")
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a recording rule %q: the file holds alerts only", g.Name, r.Record)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			seen[r.Alert] = true
			if !slices.Contains(severities, r.Labels["severity"]) {
				t.Errorf("alert %s: severity %q, want one of %v", r.Alert, r.Labels["severity"], severities)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			for _, err := range checkQuery(r.Expr, metrics) {
				t.Errorf("alert %s: %v", r.Alert, err)
			}
			if !strings.Contains(docs, "`"+r.Alert+"`") {
				t.Errorf("alert %s is not explained in docs/operations.md, \"Dashboards and alerts\"", r.Alert)
			}
		}
	}
}

// operationsSection returns the section of docs/operations.md under the
// heading title, up to the next heading of its level.
func operationsSection(t *testing.T, title string) string {
	t.Helper()
	doc := string(readFile(t, "docs/operations.md"))
	_, after, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("docs/operations.md has no section %q", title)
	}
	section, _, _ := strings.Cut(after, "\n## ")
	return section
}

// dashboard is the part of a Grafana dashboard model the tests read.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			Query    any    `json:"query"`
			AllValue string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

// grafanaVars matches the variables Grafana substitutes in a query:
// $name, ${name} and ${name:format}.
var grafanaVars = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(:[a-z]+)?\}|\$([A-Za-z0-9_]+)`)

// labelValues matches Grafana's label_values(metric, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\(([a-z_:]+), *([a-z_]+)\)$`)

// checkDashboard returns one error per problem of the dashboard model b: not
// JSON, a panel without a data source, title or query, a query that does not
// parse or selects a metric or label nobody exports. Variables are replaced
// as Grafana would: a range for the interval variables, the "All" value for
// the dashboard's own.
func checkDashboard(b []byte, metrics map[string][]string) []error {
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		return []error{fmt.Errorf("not a dashboard: %w", err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return []error{fmt.Errorf("not a dashboard: data after the object")}
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if d.Title == "" || d.UID == "" {
		bad("the dashboard has no title or uid")
	}
	values := map[string]string{"__rate_interval": "5m", "__interval": "1m", "__range": "6h"}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
		case "query":
			values[v.Name] = v.AllValue
			if q, _ := v.Query.(map[string]any); q != nil {
				// label_values(metric, label) is no PromQL: check its metric.
				if m := labelValues.FindStringSubmatch(fmt.Sprint(q["query"])); m == nil {
					bad("variable %s: query %v is not label_values(metric, label)", v.Name, q["query"])
				} else {
					for _, err := range checkQuery(m[1]+"{"+m[2]+`=~".*"}`, metrics) {
						bad("variable %s: %v", v.Name, err)
					}
				}
			}
		default:
			bad("variable %s: type %q", v.Name, v.Type)
		}
	}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			what := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			var ds struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			}
			if err := json.Unmarshal(p.Datasource, &ds); err != nil || ds.Type != "prometheus" || ds.UID == "" {
				bad("%s: data source %s: want a Prometheus one", what, p.Datasource)
			}
			if strings.TrimSpace(p.Title) == "" {
				bad("%s: no title", what)
			}
			if len(p.Targets) == 0 {
				bad("%s: no query", what)
			}
			for _, tg := range p.Targets {
				expr := grafanaVars.ReplaceAllStringFunc(tg.Expr, func(v string) string {
					m := grafanaVars.FindStringSubmatch(v)
					val, ok := values[m[1]+m[3]]
					if !ok {
						bad("%s: query %s: unknown variable %s", what, tg.RefID, v)
					}
					return val
				})
				if strings.TrimSpace(expr) == "" {
					bad("%s: query %s is empty", what, tg.RefID)
					continue
				}
				for _, err := range checkQuery(expr, metrics) {
					bad("%s: query %s: %v", what, tg.RefID, err)
				}
			}
		}
	}
	walk(d.Panels)
	return errs
}

// TestDashboard checks the Grafana dashboard: valid JSON, every panel with a
// Prometheus data source, a title and at least one query, every query
// parsed by Prometheus's parser and selecting only exported metrics and
// labels.
func TestDashboard(t *testing.T) {
	t.Parallel()
	for _, err := range checkDashboard(readFile(t, filepath.Join("deploy", monitoringDir, dashboardFile)), exported(t)) {
		t.Error(err)
	}
}

// TestMonitoringChecksRefuse shows that the checks of the dashboard and the
// rules fail on what they are for: a metric nobody exports, a label the
// metric lacks, a query that does not parse, a panel without a data source.
func TestMonitoringChecksRefuse(t *testing.T) {
	t.Parallel()
	metrics := exported(t)
	queries := []struct{ expr, want string }{
		{`rate(sdevents_ingress_requests_total[5m])`, `no process exports "sdevents_ingress_requests_total"`},
		{`max by (consumer) (sdevents_quota_consumer_pending)`, `no process exports "sdevents_quota_consumer_pending"`},
		{`sdevents_archiver_consumer_pending_messages{consumers="archiver"}`, `has no label "consumers"`},
		{`sum by (stream) (sdevents_ready)`, `no series under the aggregation has the label "stream"`},
		{`histogram_quantile(0.9, sum by (le) (rate(sdevents_quota_decisions_total_bucket[5m])))`, `no process exports`},
		{`sum(rate(sdevents_ready[5m])`, `unclosed left parenthesis`},
	}
	for _, q := range queries {
		if errs := checkQuery(q.expr, metrics); !strings.Contains(fmt.Sprint(errs), q.want) {
			t.Errorf("%s: errors %v, want one containing %q", q.expr, errs, q.want)
		}
	}
	for _, ok := range []string{
		`histogram_quantile(0.99, sum by (le, kind) (rate(sdevents_quota_decision_duration_seconds_bucket{namespace=~".*"}[5m])))`,
		`max by (instance, check) (sdevents_ready)`,
	} {
		if errs := checkQuery(ok, metrics); len(errs) > 0 {
			t.Errorf("%s: %v", ok, errs)
		}
	}
	dashboards := []struct{ name, json, want string }{
		{"unknown metric", `{"title":"d","uid":"d","panels":[{"id":1,"type":"timeseries","title":"p","datasource":{"type":"prometheus","uid":"x"},"targets":[{"refId":"A","expr":"sdevents_nobody_exports"}]}]}`, `no process exports "sdevents_nobody_exports"`},
		{"no data source", `{"title":"d","uid":"d","panels":[{"id":1,"type":"stat","title":"p","targets":[{"refId":"A","expr":"sdevents_ready"}]}]}`, "want a Prometheus one"},
		{"no query", `{"title":"d","uid":"d","panels":[{"id":1,"type":"row","title":"r","panels":[{"id":2,"type":"stat","title":"p","datasource":{"type":"prometheus","uid":"x"}}]}]}`, "no query"},
		{"no title", `{"title":"d","uid":"d","panels":[{"id":1,"type":"stat","datasource":{"type":"prometheus","uid":"x"},"targets":[{"refId":"A","expr":"sdevents_ready"}]}]}`, "no title"},
		{"unknown variable", `{"title":"d","uid":"d","panels":[{"id":1,"type":"stat","title":"p","datasource":{"type":"prometheus","uid":"x"},"targets":[{"refId":"A","expr":"sdevents_ready{instance=~\"$host\"}"}]}]}`, "unknown variable $host"},
		{"not JSON", `{"title":"d",}`, "not a dashboard"},
	}
	for _, d := range dashboards {
		if errs := checkDashboard([]byte(d.json), metrics); !strings.Contains(fmt.Sprint(errs), d.want) {
			t.Errorf("%s: errors %v, want one containing %q", d.name, errs, d.want)
		}
	}
}
