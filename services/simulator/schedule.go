package simulator

import "time"

// CallbackRetrySchedule is the seed's retry schedule of an asynchronous
// callback answered 4xx/5xx (002 seed, "Responding to callbacks"): the delay
// before each retry, counted from the previous attempt.
var CallbackRetrySchedule = []time.Duration{
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
