package httpserver_test

import (
	"bytes"
	"encoding/json"
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

// TestRequestID: a valid incoming X-Request-Id is kept, anything else
// (absent, too long, with a space or a control character) is replaced by a
// new id; either way the answer carries it and so does the request's log
// line, with the time taken in milliseconds and the stored event's ce-id
// and sequence when the handler set them.
func TestRequestID(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := httpserver.New(zerolog.New(&logs), prometheus.NewRegistry())
	s.Echo().POST("/store", func(c echo.Context) error {
		info := httpserver.Info(c)
		info.EventID, info.Seq, info.Outcome = "cb-0123", 42, "stored"
		return c.NoContent(http.StatusOK)
	})
	s.Echo().POST("/fail", func(echo.Context) error { return httpserver.ErrBadRequest })
	max := strings.Repeat("x", httpserver.MaxRequestIDLen)
	for _, tc := range []struct {
		name, path, incoming string
		keep                 bool
	}{
		{"kept", "/store", "req-1:a/b=c", true},
		{"kept at the limit", "/store", max, true},
		{"kept on an error answer", "/fail", "req-2", true},
		{"absent", "/store", "", false},
		{"too long", "/store", max + "x", false},
		{"space", "/store", "req 3", false},
		{"control character", "/store", "req\x7f4", false},
		{"non-ASCII", "/store", "req-é", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var line bytes.Buffer
			srv := httpserver.New(zerolog.New(&line), prometheus.NewRegistry())
			srv.Echo().POST("/store", func(c echo.Context) error {
				info := httpserver.Info(c)
				info.EventID, info.Seq, info.Outcome = "cb-0123", 42, "stored"
				return c.NoContent(http.StatusOK)
			})
			srv.Echo().POST("/fail", func(echo.Context) error { return httpserver.ErrBadRequest })
			req := httptest.NewRequest(http.MethodPost, tc.path, nil)
			if tc.incoming != "" {
				req.Header.Set(httpserver.HeaderRequestID, tc.incoming)
			}
			w := httptest.NewRecorder()
			srv.Echo().ServeHTTP(w, req)
			got := w.Header().Get(httpserver.HeaderRequestID)
			if tc.keep && got != tc.incoming {
				t.Fatalf("answer's id %q, want the incoming %q", got, tc.incoming)
			}
			if !tc.keep && (got == tc.incoming || !httpserver.ValidRequestID(got) || len(got) != 26) {
				t.Fatalf("answer's id %q: want a new one for %q", got, tc.incoming)
			}
			var entry map[string]any
			if err := json.Unmarshal(line.Bytes(), &entry); err != nil {
				t.Fatalf("log line %q: %v", line.String(), err)
			}
			if entry["request_id"] != got {
				t.Errorf("log request_id %v, want %q", entry["request_id"], got)
			}
			if _, ok := entry["took_ms"].(float64); !ok || entry["took"] != nil {
				t.Errorf("log line %s: want took_ms (a number) and no took", line.String())
			}
			if tc.path == "/store" && (entry["ce_id"] != "cb-0123" || entry["seq"] != float64(42)) {
				t.Errorf("log line %s: want ce_id cb-0123 and seq 42", line.String())
			}
			if tc.path == "/fail" && (entry["ce_id"] != nil || entry["seq"] != nil) {
				t.Errorf("log line %s: ce_id or seq without a stored event", line.String())
			}
		})
	}
	// Two requests without an id get different ones.
	ids := map[string]bool{}
	for range 2 {
		w := httptest.NewRecorder()
		s.Echo().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/store", nil))
		ids[w.Header().Get(httpserver.HeaderRequestID)] = true
	}
	if len(ids) != 2 {
		t.Errorf("ids %v: want two different ones", ids)
	}
}
