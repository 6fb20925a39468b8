// Package admintoken checks the admin token that the operator API and the
// console share: a constant-time comparison, and a brake on guessing — a
// client that presented MaxFailures wrong tokens within Window is refused
// (429, Retry-After), whatever it presents, until the window of its first
// failure has passed.
//
// One Brake counts for every part of a process that accepts the admin token
// (the composition root hands the same one to each), so a guesser gets
// MaxFailures tries in all, not per endpoint. A client is an IPv4 address or
// an IPv6 /64 network: one host commonly holds a whole /64.
//
// The package decides about tokens only; where a token comes from (a bearer
// header, a login form) is its callers' business.
package admintoken

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// The brake on guessing.
const (
	MaxFailures = 10
	Window      = time.Minute
	// maxTracked bounds the clients remembered. When every entry is still
	// within its window, further clients share one overflow entry: a guesser
	// with many addresses cannot push its own entry out to start afresh.
	maxTracked = 4096
	// overflow is the key of the shared entry.
	overflow = "*"
)

// Sentinels of a refused token; pkg/httpserver answers them with the status
// each names.
var (
	// ErrWrong: the token presented is not the admin token; present the
	// right one (401).
	ErrWrong = errors.New("missing or wrong admin token")
	// ErrTooManyFailures: the client presented too many wrong tokens (429);
	// it may try again after the Retry-After the checker set.
	ErrTooManyFailures = errors.New("too many wrong admin tokens from this address")
)

// Brake counts wrong admin tokens per client: the connection's peer (an IPv4
// address, or the /64 network of an IPv6 address), since headers such as
// X-Forwarded-For are the guesser's to choose. Behind a reverse proxy every
// client shares the proxy's address, so a guesser can lock the operator out
// for a minute; it cannot get more tries. Each replica counts on its own.
// A Brake is safe for concurrent use; share one between every Checker of a
// process.
type Brake struct {
	now   func() time.Time
	mu    sync.Mutex
	fails map[string]failures
}

type failures struct {
	n     int
	since time.Time
}

// NewBrake returns an empty Brake; now is the clock (time.Now when nil).
func NewBrake(now func() time.Time) *Brake {
	if now == nil {
		now = time.Now
	}
	return &Brake{now: now, fails: map[string]failures{}}
}

// Forget drops every count (an operator changed the token, or a test).
func (b *Brake) Forget() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.fails)
}

// Client returns the key r's attempts are counted under: the peer's IPv4
// address (an IPv4-mapped IPv6 address counts as IPv4), or the /64 network
// of its IPv6 address. The port is ignored.
func Client(r *http.Request) string {
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(r.RemoteAddr); err != nil {
		return r.RemoteAddr
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// wait returns how long key is still refused (0 when it may try), counting
// nothing. Called with mu held.
func (b *Brake) wait(key string, now time.Time) time.Duration {
	f, ok := b.fails[key]
	if !ok || f.n < MaxFailures || now.Sub(f.since) >= Window {
		return 0
	}
	return f.since.Add(Window).Sub(now)
}

// attempt counts an attempt from client and returns the key it was counted
// under and 0, or returns how long the client is still refused without
// counting anything.
func (b *Brake) attempt(client string) (string, time.Duration) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	key := client
	if _, ok := b.fails[key]; !ok && len(b.fails) >= maxTracked {
		b.prune(now)
		if len(b.fails) >= maxTracked {
			key = overflow
		}
	}
	if wait := b.wait(key, now); wait > 0 {
		return key, wait
	}
	f := b.fails[key]
	if f.n == 0 || now.Sub(f.since) >= Window {
		f = failures{since: now}
	}
	f.n++
	b.fails[key] = f
	return key, 0
}

// uncount takes back an attempt counted under key (the token was right).
func (b *Brake) uncount(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.fails[key]; ok && f.n > 0 {
		f.n--
		b.fails[key] = f
	}
}

// refused returns how long client (or the overflow entry, when client is not
// tracked and the table is full) is still refused, counting nothing.
func (b *Brake) refused(client string) time.Duration {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.fails[client]; !ok && len(b.fails) >= maxTracked {
		b.prune(now)
		if len(b.fails) >= maxTracked {
			return b.wait(overflow, now)
		}
	}
	return b.wait(client, now)
}

// prune drops the entries whose window has passed or which count nothing.
// Called with mu held.
func (b *Brake) prune(now time.Time) {
	for k, f := range b.fails {
		if f.n == 0 || now.Sub(f.since) >= Window {
			delete(b.fails, k)
		}
	}
}

// Checker checks presented tokens against one admin token, counting wrong
// ones on its Brake.
type Checker struct {
	sum   [sha256.Size]byte
	brake *Brake
}

// New returns a Checker of token that counts on brake; with a nil brake it
// gets one of its own (on time.Now).
func New(token string, brake *Brake) *Checker {
	if brake == nil {
		brake = NewBrake(nil)
	}
	return &Checker{sum: sha256.Sum256([]byte(token)), brake: brake}
}

// Brake returns the brake c counts on.
func (c *Checker) Brake() *Brake { return c.brake }

// Equal compares a presented token with the admin token in constant time
// (through their digests, so that not even the length leaks). It counts
// nothing.
func (c *Checker) Equal(token string) bool {
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], c.sum[:]) == 1
}

// Allow returns ErrTooManyFailures (wrapped, with Retry-After set on w) when
// r's client is refused now, and nil otherwise. It counts nothing: callers
// use it to refuse a braked client before reading its request.
func (c *Checker) Allow(w http.ResponseWriter, r *http.Request) error {
	return refuse(w, c.brake.refused(Client(r)))
}

// Check checks token, presented by r's client. A client that presented too
// many wrong tokens gets ErrTooManyFailures (wrapped, with Retry-After set
// on w) before any comparison; a wrong token gets ErrWrong and is counted.
// Every attempt is counted before the comparison and uncounted when the
// token was right, so concurrent guesses cannot slip past the count.
func (c *Checker) Check(w http.ResponseWriter, r *http.Request, token string) error {
	key, wait := c.brake.attempt(Client(r))
	if err := refuse(w, wait); err != nil {
		return err
	}
	if !c.Equal(token) {
		return ErrWrong
	}
	c.brake.uncount(key)
	return nil
}

// refuse returns nil when wait is 0, else ErrTooManyFailures with
// Retry-After set on w.
func refuse(w http.ResponseWriter, wait time.Duration) error {
	if wait <= 0 {
		return nil
	}
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return fmt.Errorf("%w: try again in %d s", ErrTooManyFailures, secs)
}
