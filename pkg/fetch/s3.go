package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/sdevents/sdevents/pkg/s3cred"
)

// S3Config is the endpoint of s3:// image URIs (archive.source_s3).
type S3Config struct {
	// Endpoint is host:port of the service.
	Endpoint string
	// AccessKey and SecretKey are static keys. When both are empty the
	// AWS credential chain of package s3cred is used (environment, shared
	// credentials file, web identity, instance metadata).
	AccessKey string
	SecretKey string
	// Secure selects HTTPS.
	Secure bool
	// Region is optional.
	Region string
	// MaxBytes caps an object (default DefaultMaxBytes).
	MaxBytes int64
	// Limits bound each fetch as a whole: total deadline and minimum rate.
	Limits Limits
}

// S3Source reads s3://bucket/key URIs from one S3-compatible endpoint. It is
// safe for concurrent use. The endpoint is the operator's, so the SSRF guard
// does not apply to it.
type S3Source struct {
	c        *minio.Client
	maxBytes int64
	limits   Limits
}

// NewS3Source builds a minio-go client for cfg, with its static keys or else
// the credential chain (s3cred.New). It does no I/O.
func NewS3Source(cfg S3Config) (*S3Source, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("fetch: empty s3 source endpoint")
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  s3cred.New(cfg.AccessKey, cfg.SecretKey, cfg.Region),
		Secure: cfg.Secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("fetch: s3 source: %w", err)
	}
	s := NewS3SourceClient(c, cfg.MaxBytes)
	s.limits = cfg.Limits.withDefaults()
	return s, nil
}

// NewS3SourceClient returns a source reading through c, capping objects at
// maxBytes (DefaultMaxBytes when not positive), with the default Limits.
func NewS3SourceClient(c *minio.Client, maxBytes int64) *S3Source {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return &S3Source{c: c, maxBytes: maxBytes, limits: Limits{}.withDefaults()}
}

// ParseS3URI splits "s3://bucket/key" into bucket and key. Anything else
// (another scheme, no bucket, no key, a query) wraps ErrUnsupported.
func ParseS3URI(uri string) (bucket, key string, err error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return "", "", fmt.Errorf("%w: not an s3://bucket/key URI", ErrUnsupported)
	}
	key = strings.TrimPrefix(u.Path, "/")
	if key == "" {
		return "", "", fmt.Errorf("%w: %s has no key", ErrUnsupported, Redact(u))
	}
	return u.Host, key, nil
}

// Open starts reading the object named by uri. Reading fails with
// ErrTooLarge past the cap; the fetch as a whole is bounded by the Limits
// (ErrTimeout, ErrTooSlow). Closing the body ends the fetch.
//
// Errors: ErrUnsupported (bad URI), ErrNotFound (no such key or bucket),
// ErrTooLarge (declared size), a permanent error for access denied,
// ErrTimeout, ctx's error, or a transient service or network error.
func (s *S3Source) Open(ctx context.Context, uri string) (*Body, error) {
	bucket, key, err := ParseS3URI(uri)
	if err != nil {
		return nil, err
	}
	u := &url.URL{Scheme: "s3", Host: bucket, Path: "/" + key}
	f := startFetch(ctx, s.limits, u)
	o, err := s.c.GetObject(f, bucket, key, minio.GetObjectOptions{})
	if err == nil {
		var info minio.ObjectInfo
		if info, err = o.Stat(); err == nil {
			if info.Size > s.maxBytes {
				o.Close()
				f.done()
				return nil, wrap(u, fmt.Errorf("%w: %d bytes, cap %d", ErrTooLarge, info.Size, s.maxBytes))
			}
			return &Body{ReadCloser: &capReader{r: newLimitedBody(o, f, s.limits, 0), left: s.maxBytes, u: u}, Size: info.Size, ContentType: info.ContentType}, nil
		}
		o.Close()
	}
	defer f.done()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if c := context.Cause(f); c != nil && isLimit(c) {
		return nil, wrap(u, c)
	}
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NoSuchBucket", "NotFound":
		return nil, wrap(u, fmt.Errorf("%w: %w", ErrNotFound, err))
	case "AccessDenied", "InvalidBucketName", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidObjectName":
		return nil, wrap(u, fmt.Errorf("%w: %w", ErrPermanent, err))
	}
	return nil, wrap(u, err)
}
