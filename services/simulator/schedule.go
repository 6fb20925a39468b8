package simulator

import (
	"context"
	"sync"
	"time"
)

// callbackRetrySchedule is the seed's retry schedule of an asynchronous
// callback answered 4xx/5xx (002 seed, "Responding to callbacks"): the delay
// before each retry, counted from the previous attempt.
var callbackRetrySchedule = []time.Duration{
	10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 3 * time.Minute,
	4 * time.Minute, 5 * time.Minute, 6 * time.Minute, 7 * time.Minute, 8 * time.Minute,
	9 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour,
}

// SNS HTTP(S) delivery defaults: AWS's default delivery policy retries a
// failed delivery 3 times, 20 s apart (numRetries 3, minDelayTarget =
// maxDelayTarget = 20 s, no immediate retries).
const (
	DefaultSNSRetries    = 3
	DefaultSNSRetryDelay = 20 * time.Second
)

// scale compresses d by the time scale s (1 = real time); a zero or negative
// scale means 1. The result is at least a millisecond for a positive d.
func scale(d time.Duration, s float64) time.Duration {
	if s <= 0 {
		s = 1
	}
	out := time.Duration(float64(d) * s)
	if d > 0 && out < time.Millisecond {
		out = time.Millisecond
	}
	return out
}

// traffic is the shape of a run: units of work started at most rate times a
// second across workers, for duration, then up to drain for the units in
// progress to finish.
type traffic struct {
	duration, drain time.Duration
	rate            float64
	workers         int
}

// drive runs t: each worker waits for a pace token and runs one unit, until
// the traffic window ends or unit returns false. Units run under a context
// that outlives the window (so a job in progress completes) and ends when
// the drain time has passed or ctx ends. progress is started with the
// window's context; its stop is called once every worker has returned.
func drive(ctx context.Context, t traffic, progress func(window context.Context) (stop func()), unit func(hard context.Context, worker int) bool) {
	hard, cancelHard := context.WithCancel(ctx)
	defer cancelHard()
	window, cancelWindow := context.WithTimeout(ctx, t.duration)
	defer cancelWindow()
	stop := progress(window)
	tokens := make(chan struct{})
	go pace(window, t.rate, tokens)
	var wg sync.WaitGroup
	for i := range t.workers {
		wg.Go(func() {
			for {
				select {
				case <-window.Done():
					return
				case <-tokens:
				}
				if !unit(hard, i) {
					return
				}
			}
		})
	}
	<-window.Done()
	if ctx.Err() == nil {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(t.drain):
		case <-ctx.Done():
		}
	}
	cancelHard()
	wg.Wait()
	stop()
}

// pace sends a token every 1/rate seconds to a waiting worker; ticks when no
// worker waits are dropped, so the rate is a ceiling.
func pace(ctx context.Context, rate float64, tokens chan<- struct{}) {
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			select {
			case tokens <- struct{}{}:
			default:
			}
		}
	}
}
