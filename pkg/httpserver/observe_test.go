package httpserver_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/httpserver"
)

// TestObserveInfo: what a handler (and the error handler) writes into Info
// reaches the request's log line and metrics.
func TestObserveInfo(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	s := httpserver.New(zerolog.New(&logs), reg)
	s.Echo().POST("/ok", func(c echo.Context) error {
		info := httpserver.Info(c)
		info.Source, info.Kind, info.Outcome = "default", "sdTaskFinished", "stored"
		return c.JSON(http.StatusOK, map[string]bool{"success": true})
	})
	s.Echo().POST("/down", func(c echo.Context) error {
		httpserver.Info(c).Source = "default"
		return fmt.Errorf("%w: store", httpserver.ErrUnavailable)
	})
	for _, tc := range []struct {
		path   string
		status int
		line   []string
	}{
		{"/ok", http.StatusOK, []string{`"outcome":"stored"`, `"source":"default"`, `"kind":"sdTaskFinished"`}},
		{"/down", http.StatusServiceUnavailable, []string{`"outcome":"error"`, `"source":"default"`, `"error":"temporarily unavailable: store"`}},
	} {
		logs.Reset()
		w := httptest.NewRecorder()
		s.Echo().ServeHTTP(w, httptest.NewRequest(http.MethodPost, tc.path, nil))
		if w.Code != tc.status {
			t.Fatalf("%s: status %d, want %d", tc.path, w.Code, tc.status)
		}
		if n := strings.Count(logs.String(), "\n"); n != 1 {
			t.Fatalf("%s: %d log lines: %s", tc.path, n, logs.String())
		}
		for _, want := range tc.line {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("%s: log line %s lacks %s", tc.path, logs.String(), want)
			}
		}
	}
	got := requestCounts(t, reg)
	slices.Sort(got)
	want := []string{
		"code=2xx,kind=sdTaskFinished,outcome=stored,route=/ok,source=default",
		"code=5xx,kind=,outcome=error,route=/down,source=default",
	}
	if !slices.Equal(got, want) {
		t.Errorf("requests_total series %v, want %v", got, want)
	}
}

// requestCounts lists the label sets of sdevents_http_requests_total whose
// count is 1, as "name=value,...".
func requestCounts(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "sdevents_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if m.GetCounter().GetValue() == 1 {
				out = append(out, strings.Join(labels, ","))
			}
		}
	}
	return out
}
