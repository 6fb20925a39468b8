package callback

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrStale is returned by Window.Check for a timestamp outside the accepted
// window. Callers answer 401.
var ErrStale = errors.New("stale or future timestamp")

// msThreshold separates seconds from milliseconds: a value of 1e11 or more is
// milliseconds (1e11 seconds is in the year 5138).
const msThreshold = 100_000_000_000

// ParseTimestamp reads a Unix timestamp in seconds or milliseconds.
func ParseTimestamp(s string) (time.Time, error) {
	if len(s) == 0 || len(s) > 16 {
		return time.Time{}, fmt.Errorf("%w: timestamp %q", ErrMalformed, s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || s[0] == '+' {
		return time.Time{}, fmt.Errorf("%w: timestamp %q is not a number", ErrMalformed, s)
	}
	if n >= msThreshold {
		return time.UnixMilli(n), nil
	}
	return time.Unix(n, 0), nil
}

// Window is the freshness policy: how old or how far in the future a request
// may be.
type Window struct {
	// MaxAge is how old a timestamp may be.
	MaxAge time.Duration
	// MaxFuture is how far ahead of now a timestamp may be (clock skew).
	MaxFuture time.Duration
}

// Check returns ErrStale unless ts lies in [now-MaxAge, now+MaxFuture].
func (w Window) Check(ts, now time.Time) error {
	if ts.Before(now.Add(-w.MaxAge)) {
		return fmt.Errorf("%w: %s old, limit %s", ErrStale, now.Sub(ts).Round(time.Second), w.MaxAge)
	}
	if ts.After(now.Add(w.MaxFuture)) {
		return fmt.Errorf("%w: %s ahead, limit %s", ErrStale, ts.Sub(now).Round(time.Second), w.MaxFuture)
	}
	return nil
}
