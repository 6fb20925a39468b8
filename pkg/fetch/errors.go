// Package fetch opens the images the archiver copies: http(s) URLs through
// HTTPSource, with timeouts, a size cap and an SSRF guard, and s3:// URIs
// through S3Source. Inspect wraps what they return to compute the SHA-256,
// the sniffed content type and the image dimensions while the bytes flow to
// a sink, without holding the image in memory.
//
// Every error says whether retrying can help: IsPermanent reports the
// failures that will not go away (404, 403, not allowed, too large, not an
// image); everything else (timeouts, 5xx, 429, connection errors) is worth
// retrying. Error messages name a URL by scheme, host and path only: query
// strings of signed URLs never appear.
//
// The package does not log.
package fetch

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// ErrPermanent is matched (errors.Is) by every failure that retrying will
// not cure. Callers record the failure and stop.
var ErrPermanent = errors.New("fetch: permanent failure")

var (
	// ErrTooLarge: the body exceeds the size cap (declared or read). Permanent.
	ErrTooLarge error = &permanentError{"fetch: body exceeds the size cap"}
	// ErrNotAllowed: the URL's host resolves to an address the SSRF guard
	// refuses, or a redirect leads to one. Permanent.
	ErrNotAllowed error = &permanentError{"fetch: address not allowed"}
	// ErrNotImage: the body is not an image of an accepted type. Permanent.
	ErrNotImage error = &permanentError{"fetch: not an image of an accepted type"}
	// ErrUnsupported: the URL is malformed, of another scheme, or redirects
	// too often. Permanent.
	ErrUnsupported error = &permanentError{"fetch: unsupported URL"}
	// ErrNotFound: an s3:// object or bucket does not exist. Permanent.
	ErrNotFound error = &permanentError{"fetch: object not found"}
	// ErrIdleTimeout: the source sent nothing for longer than the read
	// timeout. Transient.
	ErrIdleTimeout = errors.New("fetch: read timeout")
	// ErrTimeout: the fetch took longer than Limits.Timeout. Transient.
	ErrTimeout = errors.New("fetch: took longer than the fetch timeout")
	// ErrTooSlow: the source sent the body slower than Limits.MinRate.
	// Transient.
	ErrTooSlow = errors.New("fetch: source slower than the minimum rate")
)

// Reason returns a short, fixed description of err's class, fit for a
// record that others read: it names no address, host, path or server
// message. Failures the package does not classify are "source failed".
func Reason(err error) string {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return strings.TrimSpace(fmt.Sprintf("source answered %d %s", se.Code, http.StatusText(se.Code)))
	case errors.Is(err, ErrNotAllowed):
		return "address not allowed"
	case errors.Is(err, ErrTooLarge):
		return "over the size cap"
	case errors.Is(err, ErrNotImage):
		return "not an image of an accepted type"
	case errors.Is(err, ErrUnsupported):
		return "unsupported URL"
	case errors.Is(err, ErrNotFound):
		return "object not found"
	case errors.Is(err, ErrTimeout):
		return "took longer than the fetch timeout"
	case errors.Is(err, ErrTooSlow):
		return "source slower than the minimum rate"
	case errors.Is(err, ErrIdleTimeout):
		return "source stopped sending"
	case errors.Is(err, ErrPermanent):
		return "source refused the request"
	}
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		return "source timed out"
	}
	return "source failed"
}

// IsPermanent reports whether err is a failure that retrying will not cure.
// Context cancellation is not permanent.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// permanentError is a sentinel that also matches ErrPermanent.
type permanentError struct{ msg string }

func (e *permanentError) Error() string        { return e.msg }
func (e *permanentError) Is(target error) bool { return target == ErrPermanent }

// StatusError is an HTTP answer other than 200. It is permanent for 4xx
// except 408, 425 and 429, and for 3xx that could not be followed; transient
// for 5xx, 408, 425 and 429.
type StatusError struct {
	Code int
	// URL is the request's scheme, host and path (no query).
	URL string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("fetch %s: %d %s", e.URL, e.Code, http.StatusText(e.Code))
}

// Is makes a permanent StatusError match ErrPermanent.
func (e *StatusError) Is(target error) bool { return target == ErrPermanent && permanentStatus(e.Code) }

func permanentStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
		return false
	case code >= 300 && code < 500:
		return true
	}
	return false
}

// Redact returns u as scheme://host/path: no user info, query or fragment.
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

// RedactString is Redact for a raw URL; an unparsable one becomes "<bad url>".
func RedactString(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<bad url>"
	}
	return Redact(u)
}

// queryRE finds query strings in text produced by other packages (net/http
// quotes URLs in a few messages).
var queryRE = regexp.MustCompile(`\?[^\s"'<>]*`)

// redactedError carries a message scrubbed of query strings and keeps the
// original error for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// wrap returns err prefixed with "fetch <url>: " and scrubbed of queries.
func wrap(u *url.URL, err error) error {
	return &redactedError{msg: "fetch " + Redact(u) + ": " + queryRE.ReplaceAllString(err.Error(), "?…"), err: err}
}
