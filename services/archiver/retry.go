package archiver

import (
	"math/rand/v2"
	"time"
)

// Default retry delays: the first retry after a transient failure waits
// BackoffMin, each further one twice as long, at most BackoffMax. The same
// delays space the redeliveries of a message NATS could not settle.
const (
	DefaultBackoffMin = 5 * time.Second
	DefaultBackoffMax = 10 * time.Minute
)

// backoff computes retry delays.
type backoff struct{ min, max time.Duration }

// delay returns how long to wait before attempt attempts+1, with ±20 %
// jitter, and never past until (the source's expiry), so the last attempt
// happens while the source may still be valid. It is at least 1 ms.
func (b backoff) delay(attempts int, now, until time.Time) time.Duration {
	d := b.min
	for i := 1; i < attempts && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	if left := until.Sub(now); left < d {
		d = left
	}
	return max(d, time.Millisecond)
}

// deadline is when the sources of t are no longer worth retrying: the event
// time plus archive.url_lifetime. Callback URLs expire then (5 h on the
// platform); SNS s3:// objects do not expire, but are given the same bound
// so that a broken source is not retried forever.
func (s *Service) deadline(t task) time.Time { return t.At.Add(s.lifetime) }
