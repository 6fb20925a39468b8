package sns

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// MaxCertSize bounds the signing-certificate response body (AWS's are about
// 2 KiB).
const MaxCertSize = 16 << 10

// maxCacheEntries bounds the certificate cache, fetches in flight included.
// AWS uses a handful of certificates; an attacker naming many URLs on a
// trusted host only fills the cache with short-lived failures, which are
// evicted first, and with fetches that end when their last waiter leaves.
const maxCacheEntries = 256

// maxFetches bounds the certificate downloads of one Verifier in progress at
// once (and, for its default client, the connections per host); further
// fetches wait for a turn.
const maxFetches = 4

// minRSABits is the smallest signing key accepted.
const minRSABits = 2048

// certRequest names what a certificate must satisfy, independent of the
// message: where it comes from and whom it must be issued to.
type certRequest struct {
	url   *url.URL
	names []string // acceptable DNS names (exact, case-insensitive)
	ip    net.IP   // acceptable IP SAN (extra host given as an IP literal), or nil
}

// key identifies a cache entry.
func (r certRequest) key() string {
	k := r.url.String() + "\x00" + strings.Join(r.names, ",")
	if r.ip != nil {
		k += "\x00" + r.ip.String()
	}
	return k
}

// certEntry is one cached fetch. done is closed once cert/err/expires are set;
// they are read only after <-done. waiters and cancel are guarded by the
// cache's mutex.
type certEntry struct {
	done    chan struct{}
	cert    *signingCert
	err     error
	expires time.Time

	waiters int                // callers waiting while the fetch is in flight
	cancel  context.CancelFunc // ends the fetch
}

// finished reports whether e's fetch has ended.
func (e *certEntry) finished() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// certCache caches parsed signing certificates per request and makes
// concurrent requests for one URL share one fetch.
type certCache struct {
	fetch    func(context.Context, certRequest) (*signingCert, error)
	now      func() time.Time
	timeout  time.Duration // of one download, which is shared by all waiters
	ttl      time.Duration // of a fetched certificate
	errorTTL time.Duration // of a failed fetch
	turns    chan struct{} // one token per download in progress (maxFetches)

	mu      sync.Mutex
	entries map[string]*certEntry
	peak    int // the most entries ever held, for tests
}

// newCertCache returns an empty cache that downloads with fetch.
func newCertCache(fetch func(context.Context, certRequest) (*signingCert, error), now func() time.Time, timeout, ttl, errorTTL time.Duration) *certCache {
	return &certCache{
		fetch: fetch, now: now, timeout: timeout, ttl: ttl, errorTTL: errorTTL,
		turns:   make(chan struct{}, maxFetches),
		entries: make(map[string]*certEntry),
	}
}

// get returns the certificate for r. Concurrent calls for one request share
// one fetch, which runs apart from any caller's ctx but only while some
// caller waits for it: when the last waiter's ctx ends, the fetch is
// cancelled and forgotten. At most maxFetches fetches download at once (the
// others wait for a turn; c.timeout bounds a download from its turn), and the
// cache holds at most maxCacheEntries entries, fetches in flight included.
//
// get blocks until the fetch ends or ctx ends. Errors: the fetch's
// (ErrCertFetch, ErrCertificate); ErrCertFetch wrapping ctx's error when ctx
// ends first; ErrCertFetch at once when every entry is a fetch in flight.
func (c *certCache) get(ctx context.Context, r certRequest) (*signingCert, error) {
	k := r.key()
	c.mu.Lock()
	e := c.entries[k]
	if e != nil && e.finished() && !c.now().Before(e.expires) {
		delete(c.entries, k)
		e = nil
	}
	if e == nil {
		if !c.makeRoomLocked() {
			n := len(c.entries)
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: %d certificate fetches in flight", ErrCertFetch, n)
		}
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		e = &certEntry{done: make(chan struct{}), cancel: cancel}
		c.entries[k] = e
		c.peak = max(c.peak, len(c.entries))
		go c.run(fctx, e, r)
	}
	if e.finished() {
		c.mu.Unlock()
		return e.cert, e.err
	}
	e.waiters++
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.cert, e.err
	case <-ctx.Done():
		c.leave(k, e)
		return nil, fmt.Errorf("%w: %w", ErrCertFetch, ctx.Err())
	}
}

// leave removes one waiter of e; the last one cancels e's fetch and forgets
// it, so that a later request starts afresh.
func (c *certCache) leave(k string, e *certEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.waiters--
	if e.waiters > 0 || e.finished() {
		return
	}
	e.cancel()
	if c.entries[k] == e {
		delete(c.entries, k)
	}
}

// run fetches e's certificate in its turn and publishes the result.
func (c *certCache) run(ctx context.Context, e *certEntry, r certRequest) {
	defer e.cancel()
	cert, err := c.download(ctx, r)
	ttl := c.ttl
	if err != nil {
		ttl = c.errorTTL
	}
	c.mu.Lock()
	e.cert, e.err, e.expires = cert, err, c.now().Add(ttl)
	close(e.done)
	c.mu.Unlock()
}

// download waits for a turn, then fetches within c.timeout.
func (c *certCache) download(ctx context.Context, r certRequest) (*signingCert, error) {
	select {
	case c.turns <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrCertFetch, ctx.Err())
	}
	defer func() { <-c.turns }()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.fetch(ctx, r)
}

// makeRoomLocked makes room for one entry and reports whether there is room:
// expired finished entries go first, then failures, then any finished entry.
// Fetches in flight stay, and count.
func (c *certCache) makeRoomLocked() bool {
	if len(c.entries) < maxCacheEntries {
		return true
	}
	now := c.now()
	for _, pass := range []func(*certEntry) bool{
		func(e *certEntry) bool { return !now.Before(e.expires) },
		func(e *certEntry) bool { return e.err != nil },
		func(*certEntry) bool { return true },
	} {
		for k, e := range c.entries {
			if e.finished() && pass(e) {
				delete(c.entries, k)
				if len(c.entries) < maxCacheEntries {
					return true
				}
			}
		}
	}
	return false
}

// fetchCert GETs r.url with client and returns the certificate if the answer
// is acceptable: status 200, no redirect, at most MaxCertSize bytes, exactly
// one PEM certificate (parseCertPEM), issued to one of r's names, with an RSA
// key of at least 2048 bits. Validity dates are not checked here: they are
// checked against each message's Timestamp.
//
// Errors: ErrCertFetch for transport failures and 408/429/5xx statuses,
// ErrCertificate otherwise.
func fetchCert(ctx context.Context, client *http.Client, r certRequest) (*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertFetch, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCertFetch, r.url.Host, transportCause(err))
	}
	defer resp.Body.Close()
	switch s := resp.StatusCode; {
	case s == http.StatusOK:
	case s >= 300 && s < 400:
		return nil, fmt.Errorf("%w: redirect (%d) refused", ErrCertificate, s)
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500:
		return nil, fmt.Errorf("%w: status %d", ErrCertFetch, s)
	default:
		return nil, fmt.Errorf("%w: status %d", ErrCertificate, s)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxCertSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %v", ErrCertFetch, err)
	}
	if len(body) > MaxCertSize {
		return nil, fmt.Errorf("%w: body over %d bytes", ErrCertificate, MaxCertSize)
	}
	cert, err := parseCertPEM(body)
	if err != nil {
		return nil, err
	}
	if !r.issuedTo(cert) {
		return nil, fmt.Errorf("%w: not issued to %s", ErrCertificate, strings.Join(r.accepted(), " or "))
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: key is not RSA", ErrCertificate)
	}
	if pub.N.BitLen() < minRSABits {
		return nil, fmt.Errorf("%w: RSA key of %d bits", ErrCertificate, pub.N.BitLen())
	}
	return cert, nil
}

// parseCertPEM parses body as exactly one PEM CERTIFICATE block: body must
// begin with the BEGIN line, hold no other BEGIN or END line and nothing but
// whitespace after the END line, and the block must carry no headers. This
// does not rely on pem.Decode, which skips leading text and, when a block is
// broken, resumes at the next one. It fails with ErrCertificate.
func parseCertPEM(body []byte) (*x509.Certificate, error) {
	const begin = "-----BEGIN CERTIFICATE-----"
	if !bytes.HasPrefix(body, []byte(begin+"\n")) && !bytes.HasPrefix(body, []byte(begin+"\r\n")) {
		return nil, fmt.Errorf("%w: body does not start with %s", ErrCertificate, begin)
	}
	if bytes.Count(body, []byte("-----BEGIN")) != 1 || bytes.Count(body, []byte("-----END")) != 1 {
		return nil, fmt.Errorf("%w: more than one PEM block", ErrCertificate)
	}
	block, rest := pem.Decode(body)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: broken PEM block", ErrCertificate)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("%w: PEM headers", ErrCertificate)
	}
	if len(bytes.TrimRight(rest, " \t\r\n")) != 0 {
		return nil, fmt.Errorf("%w: data after the certificate", ErrCertificate)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	return cert, nil
}

// issuedTo reports whether cert names one of r's names exactly (in the
// subject's common name or a DNS SAN; no wildcard matching), or carries r.ip
// as an IP SAN.
func (r certRequest) issuedTo(cert *x509.Certificate) bool {
	for _, n := range r.names {
		if strings.EqualFold(cert.Subject.CommonName, n) {
			return true
		}
		for _, d := range cert.DNSNames {
			if strings.EqualFold(d, n) {
				return true
			}
		}
	}
	if r.ip != nil {
		for _, ip := range cert.IPAddresses {
			if ip.Equal(r.ip) {
				return true
			}
		}
	}
	return false
}

// accepted lists r's names for error messages.
func (r certRequest) accepted() []string {
	out := append([]string(nil), r.names...)
	if r.ip != nil {
		out = append(out, r.ip.String())
	}
	return out
}

// validAt checks that t lies within cert's validity period. It fails with
// ErrCertificate.
func validAt(cert *x509.Certificate, t time.Time) error {
	if t.Before(cert.NotBefore) || t.After(cert.NotAfter) {
		return fmt.Errorf("%w: not valid at %s (valid %s to %s)", ErrCertificate,
			t.UTC().Format(time.RFC3339), cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
