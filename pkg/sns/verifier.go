package sns

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"
)

// Defaults of Config.
const (
	DefaultFetchTimeout = 5 * time.Second
	DefaultCacheTTL     = 24 * time.Hour
	DefaultErrorTTL     = 10 * time.Second
	// DefaultMaxAge covers SNS's delivery retries: an HTTP/S delivery policy
	// retries for at most one hour (a hard limit of SNS), and the second hour
	// leaves room for throttled deliveries and clock error.
	DefaultMaxAge = 2 * time.Hour
)

// MaxClockSkew is how far ahead of the Verifier's clock a Timestamp may be.
const MaxClockSkew = 5 * time.Minute

// Config configures a Verifier. The zero value of every optional field is the
// production default: only AWS hosts, system roots, real clock.
type Config struct {
	// TopicARNs is the allow-list: Verify refuses any other TopicArn with
	// ErrUnknownTopic before contacting anything. Required.
	TopicARNs []string

	// ExtraHosts are host or host:port values trusted, in addition to the SNS
	// host of the topic's region, as the host of SigningCertURL and
	// SubscribeURL, for tests and private SNS implementations. The URL rules
	// other than the host (https, no user info, the certificate path, no
	// query on SigningCertURL, no fragment) still apply. A certificate fetched
	// from an extra host may be issued to that host's name (DNS SAN or common
	// name, or IP SAN for an IP literal) instead of the AWS signing name.
	ExtraHosts []string

	// ExtraCAPEM holds PEM CA certificates trusted in addition to the system
	// roots when fetching certificates and confirming subscriptions, and as
	// roots of the signing certificate's chain. Must be empty when HTTPClient
	// is set.
	ExtraCAPEM []byte

	// HTTPClient, when set, is used (shallow-copied, with redirects refused)
	// instead of the default client; its Transport owns TLS settings.
	HTTPClient *http.Client

	// DialContext, when set, dials for the default client (tests route AWS
	// host names to a local server with it; TLS is still verified against the
	// URL's host). Must be nil when HTTPClient is set.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// Now is the clock that judges a message's age and the certificate
	// cache's; time.Now when nil. Certificate validity is judged at the
	// message's Timestamp, not at Now.
	Now func() time.Time

	// MaxAge is how old a message's Timestamp may be; an older one is
	// refused with ErrStale, as is one more than MaxClockSkew ahead of Now.
	// A receiver that remembers messages for a de-duplication horizon H must
	// keep MaxAge + MaxClockSkew <= H, so that every message it accepts
	// again is one it still remembers. DefaultMaxAge when zero.
	MaxAge time.Duration

	// FetchTimeout bounds one certificate download (shared by every Verify
	// waiting for it; a few download at once, the others wait for their
	// turn) and a Confirm whose context has no deadline.
	// DefaultFetchTimeout when zero.
	FetchTimeout time.Duration

	// CacheTTL is how long a fetched certificate is reused.
	// DefaultCacheTTL when zero.
	CacheTTL time.Duration

	// ErrorTTL is how long a failed fetch is remembered before the next
	// attempt. DefaultErrorTTL when zero; negative means not at all.
	ErrorTTL time.Duration
}

// Validate reports every problem of c, joined with errors.Join.
func (c Config) Validate() error {
	var errs []error
	if len(c.TopicARNs) == 0 {
		errs = append(errs, errors.New("sns: no topic ARNs"))
	}
	for _, a := range c.TopicARNs {
		if _, err := ParseTopicARN(a); err != nil {
			errs = append(errs, fmt.Errorf("sns: topic ARN: %w", err))
		}
	}
	for _, h := range c.ExtraHosts {
		if _, err := normalizeExtraHost(h); err != nil {
			errs = append(errs, fmt.Errorf("sns: %w", err))
		}
	}
	if len(c.ExtraCAPEM) > 0 && !x509.NewCertPool().AppendCertsFromPEM(c.ExtraCAPEM) {
		errs = append(errs, errors.New("sns: ExtraCAPEM holds no certificate"))
	}
	if c.HTTPClient != nil && (len(c.ExtraCAPEM) > 0 || c.DialContext != nil) {
		errs = append(errs, errors.New("sns: HTTPClient excludes ExtraCAPEM and DialContext"))
	}
	if c.FetchTimeout < 0 || c.CacheTTL < 0 || c.MaxAge < 0 {
		errs = append(errs, errors.New("sns: negative FetchTimeout, CacheTTL or MaxAge"))
	}
	return errors.Join(errs...)
}

// Verifier verifies SNS envelopes for one allow-list of topics. It is safe for
// concurrent use; its certificate cache is shared by all calls.
type Verifier struct {
	topics       map[string]Topic
	hosts        hostPolicy
	client       *http.Client
	fetchTimeout time.Duration
	maxAge       time.Duration
	now          func() time.Time
	certs        *certCache

	// roots and intermediates verify signing certificates' chains: the
	// system roots plus ExtraCAPEM, and the Amazon intermediates.
	roots, intermediates *x509.CertPool
}

// NewVerifier returns a Verifier for cfg, or the errors of cfg.Validate.
func NewVerifier(cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{
		topics:       make(map[string]Topic, len(cfg.TopicARNs)),
		hosts:        hostPolicy{extra: make(map[string]bool, len(cfg.ExtraHosts))},
		fetchTimeout: cmp0(cfg.FetchTimeout, DefaultFetchTimeout),
		maxAge:       cmp0(cfg.MaxAge, DefaultMaxAge),
	}
	for _, a := range cfg.TopicARNs {
		v.topics[a], _ = ParseTopicARN(a)
	}
	for _, h := range cfg.ExtraHosts {
		n, _ := normalizeExtraHost(h)
		v.hosts.extra[n] = true
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	roots.AppendCertsFromPEM(cfg.ExtraCAPEM)
	v.roots = roots
	if v.intermediates, err = amazonIntermediates(); err != nil {
		return nil, err
	}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		v.client = &c
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		t.MaxConnsPerHost = maxFetches
		if cfg.DialContext != nil {
			t.DialContext = cfg.DialContext
			t.Proxy = nil
		}
		v.client = &http.Client{Transport: t}
	}
	// A redirect is answered as is (3xx) and refused by the caller.
	v.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v.now = now
	errorTTL := cmp0(cfg.ErrorTTL, DefaultErrorTTL)
	if errorTTL < 0 {
		errorTTL = 0
	}
	v.certs = newCertCache(func(ctx context.Context, r certRequest) (*signingCert, error) {
		cert, err := fetchCert(ctx, v.client, r)
		if err != nil {
			return nil, err
		}
		return &signingCert{cert: cert}, nil
	}, now, v.fetchTimeout, cmp0(cfg.CacheTTL, DefaultCacheTTL), errorTTL)
	return v, nil
}

// cmp0 returns d, or def when d is zero.
func cmp0(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// AllowsTopic reports whether arn is in the Verifier's allow-list.
func (v *Verifier) AllowsTopic(arn string) bool {
	_, ok := v.topics[arn]
	return ok
}

// Verify checks that e was signed by SNS for an allowed topic. In order, and
// without any network call before step 7:
//
//  1. e is valid (Envelope.Validate): ErrMalformed, ErrUnknownType;
//  2. TopicArn is allowed: ErrUnknownTopic;
//  3. SignatureVersion is "1" or "2": ErrUnsupportedVersion;
//  4. Signature is base64: ErrSignature;
//  5. SigningCertURL, and SubscribeURL for confirmations, follow the host
//     rules: ErrUntrustedURL;
//  6. Timestamp is at most Config.MaxAge old and at most MaxClockSkew
//     ahead of Config.Now: ErrStale;
//  7. the certificate is fetched (or taken from the cache) and acceptable:
//     ErrCertFetch (transient), ErrCertificate;
//  8. the certificate is valid at e's Timestamp and chains, through the
//     Amazon intermediates shipped with this package, to a system root or
//     one of Config.ExtraCAPEM, every certificate valid at that Timestamp:
//     ErrCertificate;
//  9. the signature verifies: ErrSignature.
//
// The chain is checked in addition to the HTTPS fetch from the SNS host: a
// certificate that host did not get from a trusted CA is refused.
//
// Verify blocks until the certificate is available or ctx ends. A fetch is
// shared by every Verify of the same SigningCertURL, bounded by
// Config.FetchTimeout once it downloads, and cancelled when no Verify waits
// for it any more; a few download at once, and the cache holds at most a few
// hundred certificates and fetches, beyond which Verify fails at once with
// ErrCertFetch.
func (v *Verifier) Verify(ctx context.Context, e Envelope) error {
	if err := e.Validate(); err != nil {
		return err
	}
	topic, ok := v.topics[e.TopicArn]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownTopic, e.TopicArn)
	}
	if e.SignatureVersion != SignatureV1 && e.SignatureVersion != SignatureV2 {
		return fmt.Errorf("%w: %q", ErrUnsupportedVersion, e.SignatureVersion)
	}
	if _, err := base64.StdEncoding.Strict().DecodeString(e.Signature); err != nil {
		return fmt.Errorf("%w: Signature is not base64", ErrSignature)
	}
	certURL, extra, err := v.hosts.checkCertURL(e.SigningCertURL, topic)
	if err != nil {
		return fmt.Errorf("SigningCertURL: %w", err)
	}
	if e.Type != TypeNotification {
		if err := v.hosts.checkSubscribeURL(e.SubscribeURL, topic); err != nil {
			return fmt.Errorf("SubscribeURL: %w", err)
		}
	}
	at, err := e.Time()
	if err != nil {
		return err
	}
	if err := v.fresh(at); err != nil {
		return err
	}
	req := certRequest{url: certURL, names: topic.signingNames()}
	if extra {
		h := certURL.Hostname()
		if ip := net.ParseIP(h); ip != nil {
			req.ip = ip
		} else if !slices.Contains(req.names, h) {
			req.names = append(req.names, h)
		}
	}
	sc, err := v.certs.get(ctx, req)
	if err != nil {
		return err
	}
	if err := validAt(sc.cert, at); err != nil {
		return err
	}
	if err := sc.chainedAt(at, v.roots, v.intermediates); err != nil {
		return err
	}
	return checkSignature(e, sc.cert.PublicKey.(*rsa.PublicKey))
}

// fresh checks that a message signed at t is neither older than v.maxAge nor
// more than MaxClockSkew ahead of v's clock. It fails with ErrStale.
func (v *Verifier) fresh(t time.Time) error {
	now := v.now()
	switch {
	case t.Before(now.Add(-v.maxAge)):
		return fmt.Errorf("%w: Timestamp %s is more than %s old", ErrStale, t.UTC().Format(time.RFC3339), v.maxAge)
	case t.After(now.Add(MaxClockSkew)):
		return fmt.Errorf("%w: Timestamp %s is more than %s ahead", ErrStale, t.UTC().Format(time.RFC3339), MaxClockSkew)
	}
	return nil
}
