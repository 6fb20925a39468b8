package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"
)

// Defaults of Limits.
const (
	DefaultTimeout    = 2 * time.Minute
	DefaultMinRate    = 32 << 10 // bytes per second
	DefaultRateWindow = 10 * time.Second
)

// Limits bound one fetch as a whole, so that a slow source cannot hold the
// caller for long: a total deadline, and a minimum rate.
type Limits struct {
	// Timeout bounds the whole fetch, from the request to the last byte of
	// the body (default DefaultTimeout). Past it the fetch fails with
	// ErrTimeout.
	Timeout time.Duration
	// MinRate is the lowest rate, in bytes per second, at which the source
	// must send the body, averaged over each RateWindow of time spent
	// waiting for it (time the reader spends elsewhere, such as uploading,
	// does not count). A slower source fails with ErrTooSlow. Zero takes
	// DefaultMinRate; negative means no minimum.
	MinRate int64
	// RateWindow is the span MinRate is averaged over (default
	// DefaultRateWindow).
	RateWindow time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MinRate == 0 {
		l.MinRate = DefaultMinRate
	}
	if l.RateWindow <= 0 {
		l.RateWindow = DefaultRateWindow
	}
	return l
}

// isLimit reports whether err is one of the limits a fetch enforces itself.
func isLimit(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrTooSlow) || errors.Is(err, ErrIdleTimeout)
}

// fetchCtx is the context of one fetch: cancelled with ErrTimeout when the
// total deadline passes, or with the cause given to cancel (ErrTooSlow,
// ErrIdleTimeout, or nil once the body is closed).
type fetchCtx struct {
	context.Context
	parent context.Context
	cancel context.CancelCauseFunc
	stop   context.CancelFunc
	u      *url.URL
}

// startFetch derives the context of a fetch of u from ctx, the caller's.
// done must be called to release it.
func startFetch(ctx context.Context, l Limits, u *url.URL) *fetchCtx {
	tctx, stop := context.WithTimeoutCause(ctx, l.Timeout, fmt.Errorf("%w (%s)", ErrTimeout, l.Timeout))
	fctx, cancel := context.WithCancelCause(tctx)
	return &fetchCtx{Context: fctx, parent: ctx, cancel: cancel, stop: stop, u: u}
}

// done releases the fetch's context and cancels what still runs under it.
func (f *fetchCtx) done() {
	f.cancel(nil)
	f.stop()
}

// failure is the error to report for err, returned by an operation under
// f: the caller's own cancellation as it is, a limit the fetch enforced as
// that limit, anything else wrapped with the URL.
func (f *fetchCtx) failure(err error) error {
	if f.parent.Err() != nil {
		return f.parent.Err()
	}
	if c := context.Cause(f.Context); c != nil && isLimit(c) {
		return wrap(f.u, c)
	}
	return wrap(f.u, err)
}

// limitedBody enforces the limits on a body read under a fetchCtx: an idle
// timeout (when idle > 0) while a Read waits for the source, and the
// minimum rate. It releases the fetch's context on Close.
type limitedBody struct {
	r     io.ReadCloser
	f     *fetchCtx
	idle  time.Duration
	timer *time.Timer // fires after idle while a Read waits
	rate  rateMeter
}

func newLimitedBody(r io.ReadCloser, f *fetchCtx, l Limits, idle time.Duration) *limitedBody {
	b := &limitedBody{r: r, f: f, idle: idle, rate: rateMeter{min: l.MinRate, window: l.RateWindow}}
	if idle > 0 {
		b.timer = time.AfterFunc(time.Hour, func() {
			f.cancel(fmt.Errorf("%w: nothing for %s", ErrIdleTimeout, idle))
		})
		b.timer.Stop()
	}
	return b
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.timer != nil {
		b.timer.Reset(b.idle)
	}
	start := time.Now()
	n, err := b.r.Read(p)
	if b.timer != nil {
		b.timer.Stop()
	}
	switch {
	case err == io.EOF:
		return n, err
	case err != nil:
		return n, b.f.failure(err)
	}
	if slow := b.rate.add(n, time.Since(start)); slow != nil {
		b.f.cancel(slow)
		return n, wrap(b.f.u, slow)
	}
	return n, nil
}

func (b *limitedBody) Close() error {
	if b.timer != nil {
		b.timer.Stop()
	}
	err := b.r.Close()
	b.f.done()
	return err
}

// rateMeter measures the rate of a source over the time spent waiting for
// it, in consecutive windows.
type rateMeter struct {
	min    int64 // bytes per second; not positive: no minimum
	window time.Duration
	waited time.Duration
	got    int64
}

// add records n bytes that took d to arrive. At the end of each window it
// returns ErrTooSlow (wrapped) when the window's rate was under the minimum.
func (m *rateMeter) add(n int, d time.Duration) error {
	if m.min <= 0 {
		return nil
	}
	m.waited += d
	m.got += int64(n)
	if m.waited < m.window {
		return nil
	}
	if need := float64(m.min) * m.waited.Seconds(); float64(m.got) < need {
		return fmt.Errorf("%w: %d bytes in %s, minimum %d bytes/s", ErrTooSlow, m.got, m.waited.Round(time.Millisecond), m.min)
	}
	m.waited, m.got = 0, 0
	return nil
}
