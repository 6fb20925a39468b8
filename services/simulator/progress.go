package simulator

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// bar draws a progress bar on w over d, refreshed with describe, until ctx
// ends; the returned stop finishes it. A nil w draws nothing.
func bar(ctx context.Context, w io.Writer, d time.Duration, describe func() string) (stop func()) {
	if w == nil {
		return func() {}
	}
	secs := int64(d / time.Second)
	if secs < 1 {
		secs = 1
	}
	b := progressbar.NewOptions64(secs,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionFullWidth(),
	)
	start := time.Now()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			b.Describe(describe())
			_ = b.Set64(min(secs, int64(time.Since(start)/time.Second)))
			select {
			case <-t.C:
			case <-ctx.Done():
				// Traffic is over: keep describing the drain until stopped.
				_ = b.Set64(secs)
				select {
				case <-t.C:
					continue
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		b.Describe(describe())
		_ = b.Finish()
		fmt.Fprintln(w)
	}
}

// progress draws the run's bar.
func (c *Callbacks) progress(traffic context.Context) func() {
	return bar(traffic, c.cfg.Progress, c.cfg.Duration, func() string {
		t := c.stats.Totals()
		phase := "jobs"
		if traffic.Err() != nil {
			phase = "draining, jobs"
		}
		return fmt.Sprintf("%s %d · requests %d · accepted %d · denied %d · failed %d · retried %d · images %d",
			phase, c.jobs.Load(), t.Sent, t.Accepted, t.Denied, t.Refused+t.Failed, t.Retried, c.imagesMade.Load())
	})
}
