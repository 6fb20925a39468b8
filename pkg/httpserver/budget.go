package httpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// budget is a pool of bytes shared by every request of the process: a
// request body's reader takes from it before each read and gives back what
// it did not read; everything a request took returns when the request ends.
// Take waits, without order, for bytes that other requests give back.
type budget struct {
	size int64

	mu      sync.Mutex
	free    int64
	changed chan struct{} // closed and replaced whenever bytes come back

	inFlight  prometheus.GaugeFunc
	exhausted prometheus.Counter
}

func newBudget(size int64, reg prometheus.Registerer) *budget {
	b := &budget{size: size, free: size, changed: make(chan struct{})}
	b.inFlight = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "sdevents", Subsystem: "http", Name: "body_bytes_in_flight",
		Help: "Request-body bytes read and held by the requests being served.",
	}, func() float64 {
		b.mu.Lock()
		defer b.mu.Unlock()
		return float64(b.size - b.free)
	})
	b.exhausted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "sdevents", Subsystem: "http", Name: "body_budget_exhausted_total",
		Help: "Requests answered 503 because the bytes in flight stayed at the budget for the whole wait.",
	})
	reg.MustRegister(b.inFlight, b.exhausted)
	return b
}

// take takes n bytes, waiting until ctx ends for others to give them back.
func (b *budget) take(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return nil
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// give returns n bytes.
func (b *budget) give(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// errNoBudget is what a budgeted body's Read returns when no budget came
// within the wait; the middleware answers ErrBusy.
var errNoBudget = errors.New("request body budget exhausted")

// budgetChunk bounds one read, so that a request holds only what it read.
const budgetChunk = 32 << 10

// budgetedBody reads a request body against the budget.
type budgetedBody struct {
	body io.ReadCloser
	b    *budget
	ctx  context.Context
	wait time.Duration
	// left is what the declared Content-Length still allows, or -1.
	left int64
	held int64
	// starved is set when a read found no budget within the wait.
	starved bool
}

// Read takes up to len(p) bytes of budget (at most budgetChunk, at most
// what Content-Length still allows), reads, and gives back what it did
// not read. Without budget within the wait it returns errNoBudget.
func (r *budgetedBody) Read(p []byte) (int, error) {
	if r.starved {
		return 0, errNoBudget
	}
	n := int64(min(len(p), budgetChunk))
	if r.left >= 0 {
		// One byte more than declared lets the reader see the end.
		n = min(n, r.left+1)
	}
	if n == 0 {
		return r.body.Read(p)
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.wait)
	err := r.b.take(ctx, n)
	cancel()
	if err != nil {
		r.starved = true
		return 0, errNoBudget
	}
	got, err := r.body.Read(p[:n])
	r.b.give(n - int64(got))
	r.held += int64(got)
	if r.left >= 0 {
		r.left = max(0, r.left-int64(got))
	}
	return got, err
}

// Close closes the underlying body.
func (r *budgetedBody) Close() error { return r.body.Close() }

// release gives back everything the body holds.
func (r *budgetedBody) release() {
	r.b.give(r.held)
	r.held = 0
}

// limitBodies wraps every request body in a budgetedBody. A request whose
// body found no budget is answered ErrBusy (503, Retry-After), whatever its
// handler made of the failed read; the bytes it held return when it ends.
func (s *Server) limitBodies(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
			return next(c)
		}
		body := &budgetedBody{body: req.Body, b: s.budget, ctx: req.Context(), wait: s.limits.BodyWait, left: req.ContentLength}
		req.Body = body
		defer body.release()
		err := next(c)
		if body.starved {
			s.budget.exhausted.Inc()
			if !c.Response().Committed {
				return fmt.Errorf("%w: %w", ErrBusy, errNoBudget)
			}
		}
		return err
	}
}
