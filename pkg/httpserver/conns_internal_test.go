package httpserver

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// emfileListener is a real TCP listener whose first Accept calls fail as
// they do when the process is out of descriptors.
type emfileListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptErrorsDoNotStopTheServer: accept errors such as EMFILE reach
// http.Server unchanged through the connection limiter, which backs off
// and keeps accepting: requests are served once descriptors are back.
func TestAcceptErrorsDoNotStopTheServer(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	faulty := &emfileListener{Listener: inner}
	faulty.failures.Store(5)
	s := New(zerolog.Nop(), prometheus.NewRegistry(), WithLimits(Limits{MaxConns: 4}))
	s.ln = newConnLimiter(faulty, s.limits.MaxConns, prometheus.NewRegistry())
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + inner.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("after 5 failed accepts: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n := faulty.failures.Load(); n >= 0 {
		t.Fatalf("the failures were not all seen (%d left)", n+1)
	}
}
