package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// Defaults of HTTPConfig.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultReadTimeout    = 30 * time.Second
	DefaultMaxBytes       = 64 << 20
	DefaultMaxRedirects   = 3
)

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// HTTPConfig configures an HTTPSource; zero fields take the defaults.
type HTTPConfig struct {
	// AllowHosts lists hosts ("images.internal") or host:port pairs
	// ("127.0.0.1:9000") that may be fetched whatever address they resolve
	// to (archive.allow_hosts). Every other host must resolve to public
	// unicast addresses only (see IsPublic).
	AllowHosts []string
	// ConnectTimeout bounds the TCP connect and the TLS handshake.
	ConnectTimeout time.Duration
	// ReadTimeout bounds the wait for the response headers and each wait
	// for body bytes (an idle timeout, not a limit on the whole transfer).
	ReadTimeout time.Duration
	// MaxBytes caps the body.
	MaxBytes int64
	// MaxRedirects is how many redirects are followed (default 3; negative
	// means none).
	MaxRedirects int
	// TLSConfig is used for https (nil: the system roots).
	TLSConfig *tls.Config
	// Resolver resolves host names (nil: net.DefaultResolver). The guard
	// checks the addresses it returns, each one before it is dialled.
	Resolver Resolver
	// UserAgent is sent with every request (default "sdevents-archiver").
	UserAgent string
	// Limits bound each fetch as a whole: total deadline and minimum rate.
	Limits Limits
}

// HTTPSource fetches http and https URLs. It is safe for concurrent use and
// keeps idle connections for reuse; CloseIdleConnections releases them.
type HTTPSource struct {
	cfg    HTTPConfig
	allow  allowList
	client *http.Client
	tr     *http.Transport
}

// NewHTTPSource returns a source for cfg. It fails only on a malformed
// AllowHosts entry.
func NewHTTPSource(cfg HTTPConfig) (*HTTPSource, error) {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	switch {
	case cfg.MaxRedirects == 0:
		cfg.MaxRedirects = DefaultMaxRedirects
	case cfg.MaxRedirects < 0:
		cfg.MaxRedirects = 0
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "sdevents-archiver"
	}
	cfg.Limits = cfg.Limits.withDefaults()
	al, err := newAllowList(cfg.AllowHosts)
	if err != nil {
		return nil, err
	}
	s := &HTTPSource{cfg: cfg, allow: al}
	s.tr = &http.Transport{
		Proxy:                 nil, // a proxy would dial for us, past the guard
		DialContext:           s.dial,
		TLSClientConfig:       cfg.TLSConfig.Clone(),
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.ReadTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // store the bytes as served
		ForceAttemptHTTP2:     true,
	}
	s.client = &http.Client{Transport: s.tr, CheckRedirect: s.checkRedirect}
	return s, nil
}

// CloseIdleConnections closes the idle keep-alive connections.
func (s *HTTPSource) CloseIdleConnections() { s.tr.CloseIdleConnections() }

// dial connects to addr (host:port as in the URL) on an address the guard
// accepts: any address when the host is allowed, public ones otherwise. The
// check runs on the resolved address about to be dialled, again in the
// dialer's Control hook, so a name re-resolving to another address (DNS
// rebinding) cannot slip past.
func (s *HTTPSource) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	allowed := s.allow.allows(host, port)
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = s.cfg.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
	}
	d := &net.Dialer{
		Timeout:   s.cfg.ConnectTimeout,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			if allowed {
				return nil
			}
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !IsPublic(ap.Addr()) {
				return fmt.Errorf("%w: %s", ErrNotAllowed, address)
			}
			return nil
		},
	}
	var errs []error
	for _, ip := range ips {
		if !allowed && !IsPublic(ip) {
			errs = append(errs, fmt.Errorf("%w: %s resolves to %s, which is not public and not in allow_hosts", ErrNotAllowed, host, ip))
			continue
		}
		c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, errors.Join(errs...)
}

// checkRedirect follows at most MaxRedirects redirects, only to http(s)
// URLs; a literal address the guard refuses is refused here, a name when it
// is dialled.
func (s *HTTPSource) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > s.cfg.MaxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrUnsupported, s.cfg.MaxRedirects)
	}
	u := req.URL
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: redirect to scheme %q", ErrUnsupported, u.Scheme)
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !IsPublic(ip) && !s.allow.allows(u.Hostname(), port(u)) {
		return fmt.Errorf("%w: redirect to %s", ErrNotAllowed, Redact(u))
	}
	return nil
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// Body is an opened image: the bytes, and what the source declared about
// them. Close releases the connection; it must be called.
type Body struct {
	io.ReadCloser
	// Size is the declared length, or -1 when unknown.
	Size int64
	// ContentType is the declared type (untrusted; sniff with Inspect).
	ContentType string
}

// Open GETs rawURL (http or https) and returns its body once the answer is
// 200. The fetch as a whole, reading the body included, is bounded by the
// Limits: it fails with ErrTimeout past Timeout and with ErrTooSlow when the
// body arrives slower than MinRate. Reading the body fails with ErrTooLarge
// past MaxBytes and with ErrIdleTimeout when the server stalls longer than
// ReadTimeout. Closing the body ends the fetch.
//
// Errors: ErrUnsupported, ErrNotAllowed, ErrTooLarge (declared length),
// *StatusError, ErrTimeout, ctx's error, or a transient network error;
// IsPermanent tells them apart. Messages never contain the query string.
func (s *HTTPSource) Open(ctx context.Context, rawURL string) (*Body, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: unparsable http URL", ErrUnsupported)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%w: %s", ErrUnsupported, Redact(u))
	}
	f := startFetch(ctx, s.cfg.Limits, u)
	req, err := http.NewRequestWithContext(f, http.MethodGet, u.String(), nil)
	if err != nil {
		f.done()
		return nil, wrap(u, fmt.Errorf("%w: %w", ErrUnsupported, err))
	}
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	req.Header.Set("Accept", "image/*")
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message holds the full URL
		}
		err = f.failure(err)
		f.done()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10) // lets the connection be reused
		resp.Body.Close()
		f.done()
		return nil, &StatusError{Code: resp.StatusCode, URL: Redact(u)}
	}
	if resp.ContentLength > s.cfg.MaxBytes {
		resp.Body.Close()
		f.done()
		return nil, wrap(u, fmt.Errorf("%w: declared %d bytes, cap %d", ErrTooLarge, resp.ContentLength, s.cfg.MaxBytes))
	}
	return &Body{
		ReadCloser:  &capReader{r: newLimitedBody(resp.Body, f, s.cfg.Limits, s.cfg.ReadTimeout), left: s.cfg.MaxBytes, u: u},
		Size:        resp.ContentLength,
		ContentType: resp.Header.Get("Content-Type"),
	}, nil
}

// capReader fails with ErrTooLarge once more than left bytes arrive.
type capReader struct {
	r    io.ReadCloser
	left int64
	u    *url.URL
}

func (c *capReader) Read(p []byte) (int, error) {
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	if int64(n) > c.left {
		n = int(c.left)
		c.left = 0
		return n, wrap(c.u, fmt.Errorf("%w: more than the cap", ErrTooLarge))
	}
	c.left -= int64(n)
	return n, err
}

func (c *capReader) Close() error { return c.r.Close() }
