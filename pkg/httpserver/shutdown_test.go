package httpserver_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
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

// TestOnShutdownEndsLongRequests: a request that lasts until it is told to
// end (a stream of server-sent events) does not hold Shutdown up: the
// OnShutdown function ends it, and Shutdown returns without reaching its
// deadline. A second Shutdown does not call the function again.
func TestOnShutdownEndsLongRequests(t *testing.T) {
	t.Parallel()
	s := httpserver.New(zerolog.New(io.Discard), prometheus.NewRegistry())
	end := make(chan struct{})
	entered := make(chan struct{})
	s.Echo().GET("/stream", func(c echo.Context) error {
		close(entered)
		c.Response().WriteHeader(http.StatusOK)
		c.Response().Flush()
		<-end
		return nil
	})
	calls := 0
	s.OnShutdown(func() { calls++; close(end) })
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	resp, err := http.Get("http://" + s.Addr() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an open stream: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil || calls != 1 {
		t.Fatalf("second shutdown: %v, the function called %d times", err, calls)
	}
}
