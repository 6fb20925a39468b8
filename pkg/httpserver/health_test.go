package httpserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/httpserver"
)

// serve starts s on a loopback port and stops it when the test ends.
func serve(t *testing.T, s *httpserver.Server) string {
	t.Helper()
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		// Bounded: a failed test may leave a handler waiting.
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = s.Shutdown(sctx)
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return s.Addr()
}

// TestFailTurnsHealthRed: after Fail, /healthz and /readyz answer 503
// naming the error.
func TestFailTurnsHealthRed(t *testing.T) {
	t.Parallel()
	s := httpserver.New(zerolog.Nop(), prometheus.NewRegistry())
	addr := serve(t, s)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before: %d", code)
	}
	s.Fail(errors.New("nats connection closed for good"))
	for _, path := range []string{"/healthz", "/readyz"} {
		code, body := get(path)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "closed for good") {
			t.Errorf("%s after Fail: %d %s", path, code, body)
		}
	}
}

// TestReadyChecksDoNotStarveEachOther: a check that waits for the probe's
// deadline does not spend the deadline of the others; each reports its
// own reason.
func TestReadyChecksDoNotStarveEachOther(t *testing.T) {
	t.Parallel()
	s := httpserver.New(zerolog.Nop(), prometheus.NewRegistry())
	s.AddReadyCheck("slow", func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("no answer before the deadline")
	})
	s.AddReadyCheck("quorum", func(ctx context.Context) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return errors.New("no quorum")
	})
	addr := serve(t, s)
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Ready    bool              `json:"ready"`
		Problems map[string]string `json:"problems"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || body.Ready {
		t.Errorf("/readyz: %d ready=%v", resp.StatusCode, body.Ready)
	}
	if body.Problems["quorum"] != "no quorum" || body.Problems["slow"] == "" {
		t.Errorf("problems: %q", body.Problems)
	}
}

// TestReadinessMetric: sdevents_ready reports, at each scrape, every check
// of /readyz by name (1 ready, 0 not) and check="process" (0 once the
// process failed for good); it passes promlint and carries no error text.
func TestReadinessMetric(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := httpserver.New(zerolog.Nop(), reg)
	var down atomic.Bool
	s.AddReadyCheck("nats", func(context.Context) error { return nil })
	s.AddReadyCheck("streams", func(context.Context) error {
		if down.Load() {
			return errors.New("stream INGRESS at 10.0.0.1 missing")
		}
		return nil
	})
	addr := serve(t, s)
	scrape := func() string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var ready []string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "sdevents_ready{") {
				ready = append(ready, line)
			}
		}
		return strings.Join(ready, "\n")
	}
	readyz := func() int {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, step := range []struct {
		name   string
		change func()
		want   string
		status int
	}{
		{"ready", func() {}, "sdevents_ready{check=\"nats\"} 1\nsdevents_ready{check=\"process\"} 1\nsdevents_ready{check=\"streams\"} 1", http.StatusOK},
		{"a check fails", func() { down.Store(true) }, "sdevents_ready{check=\"nats\"} 1\nsdevents_ready{check=\"process\"} 1\nsdevents_ready{check=\"streams\"} 0", http.StatusServiceUnavailable},
		{"it recovers", func() { down.Store(false) }, "sdevents_ready{check=\"nats\"} 1\nsdevents_ready{check=\"process\"} 1\nsdevents_ready{check=\"streams\"} 1", http.StatusOK},
		{"failed for good", func() { s.Fail(errors.New("nats connection closed for good")) }, "sdevents_ready{check=\"nats\"} 1\nsdevents_ready{check=\"process\"} 0\nsdevents_ready{check=\"streams\"} 1", http.StatusServiceUnavailable},
	} {
		step.change()
		if got := scrape(); got != step.want {
			t.Errorf("%s: /metrics has\n%s\nwant\n%s", step.name, got, step.want)
		}
		if got := readyz(); got != step.status {
			t.Errorf("%s: /readyz %d, want %d", step.name, got, step.status)
		}
	}
	problems, err := testutil.GatherAndLint(reg, "sdevents_ready")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
