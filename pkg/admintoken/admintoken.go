// Package admintoken checks the admin token that the operator API and the
// console share: a constant-time comparison, and a brake on guessing — a
// client address that presented MaxFailures wrong tokens within Window is
// refused (429, Retry-After), whatever it presents, until the window of its
// first failure has passed.
//
// The package decides about tokens only; where a token comes from (a bearer
// header, a login form) is its callers' business.
package admintoken

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sdevents/sdevents/pkg/httpserver"
)

// The brake on guessing.
const (
	MaxFailures = 10
	Window      = time.Minute
	// maxTracked bounds the addresses remembered; past it, expired ones are
	// dropped first, then the oldest.
	maxTracked = 4096
)

var (
	// ErrWrong: the token presented is not the admin token (401).
	ErrWrong = fmt.Errorf("%w: missing or wrong admin token", httpserver.ErrUnauthorized)
	// ErrTooManyFailures: the client presented too many wrong tokens (429).
	ErrTooManyFailures = errors.New("too many wrong admin tokens from this address")
)

func init() { httpserver.RegisterStatus(ErrTooManyFailures, http.StatusTooManyRequests) }

// Checker checks presented tokens against one admin token. It counts wrong
// tokens per client address: the connection's peer, since headers such as
// X-Forwarded-For are the guesser's to choose. Behind a reverse proxy every
// client shares the proxy's address, so a guesser can lock the operator out
// for a minute; it cannot get more tries. Each replica counts on its own.
type Checker struct {
	sum   [sha256.Size]byte
	now   func() time.Time
	mu    sync.Mutex
	fails map[string]failures
}

type failures struct {
	n     int
	since time.Time
}

// New returns a Checker of token; now is the clock (time.Now when nil).
func New(token string, now func() time.Time) *Checker {
	if now == nil {
		now = time.Now
	}
	return &Checker{sum: sha256.Sum256([]byte(token)), now: now, fails: map[string]failures{}}
}

// Equal compares a presented token with the admin token in constant time
// (through their digests, so that not even the length leaks). It counts
// nothing.
func (c *Checker) Equal(token string) bool {
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], c.sum[:]) == 1
}

// Check checks token, presented by r's client. A client that presented too
// many wrong tokens gets ErrTooManyFailures (wrapped, with Retry-After set
// on w) before any comparison; a wrong token gets ErrWrong and is counted.
// Every attempt is counted before the comparison and uncounted when the
// token was right, so concurrent guesses cannot slip past the count.
func (c *Checker) Check(w http.ResponseWriter, r *http.Request, token string) error {
	addr := peer(r)
	if wait := c.attempt(addr); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return fmt.Errorf("%w: try again in %d s", ErrTooManyFailures, secs)
	}
	if !c.Equal(token) {
		return ErrWrong
	}
	c.mu.Lock()
	if f, ok := c.fails[addr]; ok && f.n > 0 {
		f.n--
		c.fails[addr] = f
	}
	c.mu.Unlock()
	return nil
}

// peer is the request's client address without its port.
func peer(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// attempt counts an attempt from addr and returns 0, or returns how long
// addr is still refused without counting anything.
func (c *Checker) attempt(addr string) time.Duration {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.fails[addr]
	if f.n == 0 || now.Sub(f.since) >= Window {
		f = failures{since: now}
	}
	if f.n >= MaxFailures {
		return f.since.Add(Window).Sub(now)
	}
	f.n++
	c.fails[addr] = f
	if len(c.fails) > maxTracked {
		c.prune(now)
	}
	return 0
}

// prune drops expired entries, then the oldest until the map is under its
// bound. Called with mu held.
func (c *Checker) prune(now time.Time) {
	for a, f := range c.fails {
		if now.Sub(f.since) > Window {
			delete(c.fails, a)
		}
	}
	for len(c.fails) > maxTracked {
		var oldest string
		var t time.Time
		for a, f := range c.fails {
			if oldest == "" || f.since.Before(t) {
				oldest, t = a, f.since
			}
		}
		delete(c.fails, oldest)
	}
}

// Forget drops every count (an operator changed the token, or a test).
func (c *Checker) Forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.fails)
}
