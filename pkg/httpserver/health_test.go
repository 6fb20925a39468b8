package httpserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
