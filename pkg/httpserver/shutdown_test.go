package httpserver_test

import (
	"context"
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/httpserver"
)

// TestShutdownRacingRun: Shutdown right after Run was started (a signal
// during start-up) stops the server, with no data race on its state.
func TestShutdownRacingRun(t *testing.T) {
	t.Parallel()
	for range 20 {
		s := httpserver.New(zerolog.New(io.Discard), prometheus.NewRegistry())
		if err := s.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(context.Background()) }()
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-done
	}
}
