package httpserver_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// metric returns the value of the series of name whose labels contain
// every name=value of want (0 when there is none).
func metric(t *testing.T, reg *prometheus.Registry, name string, want ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, w := range want {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName()+"="+l.GetValue() == w {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// rawGet sends a GET on c and reads the answer; it returns the status, or
// the error when the connection was closed instead.
func rawGet(c net.Conn, path string, extra string) (int, error) {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\n%s\r\n", path, extra); err != nil {
		return 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestOversizedHeadersAre431: headers beyond MaxHeaderBytes (16 KiB by
// default, plus net/http's 4 KiB of slack) are refused with 431 before any
// handler runs; headers within it are served.
func TestOversizedHeadersAre431(t *testing.T) {
	t.Parallel()
	s := httpserver.New(zerolog.Nop(), prometheus.NewRegistry())
	addr := serve(t, s)
	for _, tc := range []struct {
		name   string
		header int
		want   int
	}{
		{"8 KiB", 8 << 10, http.StatusOK},
		{"64 KiB", 64 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{"1 MiB", 1 << 20, http.StatusRequestHeaderFieldsTooLarge},
	} {
		c := dial(t, addr)
		// Write concurrently: the server answers 431 and closes before it
		// has read a megabyte.
		go func() {
			_, _ = fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: %s\r\n\r\n", strings.Repeat("a", tc.header))
		}()
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s of headers: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}

// TestConnectionCap: with MaxConns 3, a fourth connection is refused
// (and counted) while three requests are being served; it takes the place
// of the longest-idle keep-alive connection once they are answered; and a
// connection that sends nothing gives way to a newer one after
// NewConnGrace. Open connections never exceed the cap.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := httpserver.New(zerolog.Nop(), reg, httpserver.WithLimits(httpserver.Limits{MaxConns: 3}))
	entered, release := make(chan struct{}, 3), make(chan struct{})
	s.Echo().GET("/block", func(c echo.Context) error {
		entered <- struct{}{}
		<-release
		return c.NoContent(http.StatusNoContent)
	})
	addr := serve(t, s)
	open := func() float64 { return metric(t, reg, "sdevents_http_connections_open") }

	// Three requests in progress hold every slot.
	busy := make([]net.Conn, 3)
	answers := make(chan error, 3)
	for i := range busy {
		busy[i] = dial(t, addr)
		go func() {
			code, err := rawGet(busy[i], "/block", "")
			if err == nil && code != http.StatusNoContent {
				err = fmt.Errorf("status %d", code)
			}
			answers <- err
		}()
		<-entered
	}
	extra := dial(t, addr)
	if code, err := rawGet(extra, "/healthz", ""); err == nil {
		t.Fatalf("a fourth connection was served (%d) while three requests held the cap", code)
	}
	if n := metric(t, reg, "sdevents_http_connections_refused_total"); n != 1 {
		t.Errorf("refused %v, want 1", n)
	}
	if n := open(); n != 3 {
		t.Errorf("open connections %v, want 3", n)
	}

	// Answered, the three stay open as idle keep-alive connections; a new
	// connection takes the place of the longest-idle one.
	close(release)
	for range busy {
		if err := <-answers; err != nil {
			t.Fatal(err)
		}
	}
	// (The server marks a connection idle just after its answer is sent.)
	natstest.Eventually(t, 30*time.Second, "a new connection served at the cap", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		t.Cleanup(func() { c.Close() })
		code, err := rawGet(c, "/healthz", "")
		return err == nil && code == http.StatusOK
	})
	if n := metric(t, reg, "sdevents_http_connections_evicted_total", "state=idle"); n != 1 {
		t.Errorf("idle evictions %v, want 1", n)
	}

	// Connections that send nothing hold their slots only for the grace
	// period against newcomers. Six of them: each takes the place of an
	// idle one or is refused, until silent ones hold every slot.
	turnedAway := func() float64 {
		return metric(t, reg, "sdevents_http_connections_refused_total") +
			metric(t, reg, "sdevents_http_connections_evicted_total", "state=idle") +
			metric(t, reg, "sdevents_http_connections_evicted_total", "state=new")
	}
	before := turnedAway()
	for range 6 {
		_ = dial(t, addr)
	}
	natstest.Eventually(t, 30*time.Second, "the silent connections accepted", func() bool { return turnedAway() == before+6 })
	natstest.Eventually(t, 30*time.Second, "a new connection served past silent ones", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		code, err := rawGet(c, "/healthz", "")
		return err == nil && code == http.StatusOK
	})
	if n := metric(t, reg, "sdevents_http_connections_evicted_total", "state=new"); n < 1 {
		t.Errorf("evictions of silent connections %v, want at least 1", n)
	}
	if n := open(); n > 3 {
		t.Errorf("open connections %v over the cap", n)
	}
}

// TestBodyBudget: request bodies share a process-wide budget of bytes in
// flight. While one request holds half of it (its body one byte short), a
// second one that cannot get budget within the wait is answered 503 with
// Retry-After — whatever its handler made of the failed read — and its
// handler gets no body; once the first one ends, a larger body is served,
// and every byte returns to the budget.
func TestBodyBudget(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := httpserver.New(zerolog.Nop(), reg, httpserver.WithLimits(httpserver.Limits{
		BodyBudget: 128 << 10,
		BodyWait:   100 * time.Millisecond,
	}))
	handled := make(chan int, 4)
	s.Echo().POST("/store", func(c echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			// What a handler does with a failed read: the budget answer wins.
			return fmt.Errorf("%w: reading body: %v", httpserver.ErrBadRequest, err)
		}
		handled <- len(body)
		return c.NoContent(http.StatusNoContent)
	})
	// /hold reads all but the last byte, says so, then waits for it.
	held := make(chan struct{}, 1)
	s.Echo().POST("/hold", func(c echo.Context) error {
		body := c.Request().Body
		if _, err := io.ReadFull(body, make([]byte, c.Request().ContentLength-1)); err != nil {
			return fmt.Errorf("%w: %v", httpserver.ErrBadRequest, err)
		}
		held <- struct{}{}
		if _, err := io.ReadFull(body, make([]byte, 1)); err != nil {
			return fmt.Errorf("%w: %v", httpserver.ErrBadRequest, err)
		}
		return c.NoContent(http.StatusNoContent)
	})
	addr := serve(t, s)
	inFlight := func() float64 { return metric(t, reg, "sdevents_http_body_bytes_in_flight") }

	// A: 64 KiB declared, one byte short. It holds what it read and, for
	// its pending one-byte read, one byte more: 64 KiB in all.
	a := dial(t, addr)
	if _, err := fmt.Fprintf(a, "POST /hold HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", 64<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write(make([]byte, 64<<10-1)); err != nil {
		t.Fatal(err)
	}
	<-held
	natstest.Eventually(t, 30*time.Second, "A holding 64 KiB", func() bool { return inFlight() == 64<<10 })

	// B: one byte more than what A leaves.
	post := func(n int) *http.Response {
		t.Helper()
		resp, err := http.Post("http://"+addr+"/store", "application/octet-stream", bytes.NewReader(make([]byte, n)))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := post(64<<10 + 1)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("B beside A: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := metric(t, reg, "sdevents_http_body_budget_exhausted_total"); n != 1 {
		t.Errorf("budget exhausted %v, want 1", n)
	}

	// A completes; then a larger body fits.
	if _, err := a.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	_ = a.SetReadDeadline(time.Now().Add(30 * time.Second))
	ra, err := http.ReadResponse(bufio.NewReader(a), nil)
	if err != nil {
		t.Fatal(err)
	}
	ra.Body.Close()
	if ra.StatusCode != http.StatusNoContent {
		t.Fatalf("A: %d", ra.StatusCode)
	}
	if resp := post(96 << 10); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("96 KiB alone: %d", resp.StatusCode)
	}
	if got := <-handled; got != 96<<10 {
		t.Errorf("handled a %d-byte body, want %d", got, 96<<10)
	}
	select {
	case n := <-handled:
		t.Errorf("a refused body reached its handler whole (%d bytes)", n)
	default:
	}
	natstest.Eventually(t, 30*time.Second, "budget back to empty", func() bool { return inFlight() == 0 })
}
