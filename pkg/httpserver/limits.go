package httpserver

import (
	"time"
)

// Limits bound what the listener of a Server and its requests may hold, so
// that no client (or crowd of clients) can exhaust the process's descriptors
// or memory. Zero fields take the value of DefaultLimits.
type Limits struct {
	// MaxConns caps the connections open at once. At the cap a new
	// connection takes the place of the longest-idle keep-alive connection,
	// or of the oldest one that has not sent a complete request header
	// within NewConnGrace; when there is none it is refused (closed at once).
	// Zero derives it from the descriptor limit (DefaultMaxConns).
	MaxConns int
	// MaxHeaderBytes bounds the request line and headers; more is 431.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the wait for a complete request header,
	// the first request's included.
	ReadHeaderTimeout time.Duration
	// ReadTimeout and WriteTimeout bound the whole request read and the
	// answer's write.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no new request.
	IdleTimeout time.Duration
	// BodyBudget is the number of request-body bytes that every request of
	// the process may hold at once, read and not yet released.
	BodyBudget int64
	// BodyWait is how long a request waits for budget before it is answered
	// 503 with Retry-After.
	BodyWait time.Duration
}

// NewConnGrace is how long a new connection may take to send its request
// header before, at the connection cap, a newer one may take its place.
const NewConnGrace = time.Second

// DefaultLimits are the limits of a Server built without WithLimits.
func DefaultLimits() Limits {
	return Limits{
		MaxConns:          DefaultMaxConns(),
		MaxHeaderBytes:    16 << 10,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		BodyBudget:        64 << 20,
		BodyWait:          time.Second,
	}
}

// maxConnsCeiling bounds the derived connection cap on machines with a
// very large descriptor limit.
const maxConnsCeiling = 4096

// DefaultMaxConns is the connection cap derived from the process's
// descriptor limit (RLIMIT_NOFILE): a quarter of it, at most 4096 and at
// least 8. The other three quarters stay for the store's files, the NATS
// connections and the outgoing requests of the process.
func DefaultMaxConns() int {
	n := descriptorLimit()
	if n <= 0 {
		return maxConnsCeiling
	}
	return min(maxConnsCeiling, max(8, n/4))
}

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = d.ReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.BodyBudget <= 0 {
		l.BodyBudget = d.BodyBudget
	}
	if l.BodyWait <= 0 {
		l.BodyWait = d.BodyWait
	}
	return l
}
