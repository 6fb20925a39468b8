package console

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/httpserver"
)

// Guessing the admin token: a client address that presented a wrong token
// maxFailures times within failureWindow is refused (429, Retry-After) until
// the window of its first failure has passed, whatever it presents.
const (
	maxFailures   = 10
	failureWindow = time.Minute
	// maxTracked bounds the addresses remembered; past it, expired ones are
	// dropped first, then the oldest.
	maxTracked = 4096
)

// ErrTooManyFailures: the client presented too many wrong tokens (429).
var ErrTooManyFailures = errors.New("too many wrong admin tokens from this address")

func init() { httpserver.RegisterStatus(ErrTooManyFailures, http.StatusTooManyRequests) }

// failureLimiter counts wrong admin tokens per client address. The address
// is the connection's peer: headers such as X-Forwarded-For are not trusted,
// since a guesser would rotate them. Behind a reverse proxy every client
// shares the proxy's address, so a guesser can lock the operator out for a
// minute; it cannot get further.
type failureLimiter struct {
	now   func() time.Time
	mu    sync.Mutex
	fails map[string]failures
}

type failures struct {
	n     int
	since time.Time
}

func newFailureLimiter(now func() time.Time) *failureLimiter {
	return &failureLimiter{now: now, fails: map[string]failures{}}
}

// peer is the request's client address without its port.
func peer(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// check returns ErrTooManyFailures, with Retry-After set on c, when c's
// client is blocked.
func (l *failureLimiter) check(c echo.Context) error {
	l.mu.Lock()
	f, ok := l.fails[peer(c.Request())]
	l.mu.Unlock()
	if !ok || f.n < maxFailures {
		return nil
	}
	wait := f.since.Add(failureWindow).Sub(l.now())
	if wait <= 0 {
		return nil
	}
	secs := int((wait + time.Second - 1) / time.Second)
	c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
	return fmt.Errorf("%w: try again in %d s", ErrTooManyFailures, secs)
}

// fail counts a wrong token from c's client.
func (l *failureLimiter) fail(c echo.Context) {
	now := l.now()
	addr := peer(c.Request())
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[addr]
	if f.n == 0 || now.Sub(f.since) > failureWindow {
		f = failures{since: now}
	}
	f.n++
	l.fails[addr] = f
	if len(l.fails) > maxTracked {
		l.prune(now)
	}
}

// prune drops expired entries, then the oldest until the map is under its
// bound. Called with mu held.
func (l *failureLimiter) prune(now time.Time) {
	for a, f := range l.fails {
		if now.Sub(f.since) > failureWindow {
			delete(l.fails, a)
		}
	}
	for len(l.fails) > maxTracked {
		var oldest string
		var t time.Time
		for a, f := range l.fails {
			if oldest == "" || f.since.Before(t) {
				oldest, t = a, f.since
			}
		}
		delete(l.fails, oldest)
	}
}
