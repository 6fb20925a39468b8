package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/sdevents/sdevents/pkg/blob"
	"github.com/sdevents/sdevents/pkg/blob/dirstore"
	"github.com/sdevents/sdevents/pkg/blob/s3store"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/fetch"
)

// BlobStore is the sink the archiver writes to. dirstore.Store (a local
// directory) and s3store.Store (MinIO, S3) implement it; both pass the
// blobtest contract suite.
type BlobStore interface {
	// Stat describes the object under key, or fails with blob.ErrNotFound.
	// An object whose SHA256 is empty is incomplete: it counts as absent.
	Stat(ctx context.Context, key string) (blob.Object, error)
	// Put streams r (size bytes, or -1 when unknown) into the object under
	// key, computing its SHA-256 on the way, holding at most one bounded part in
	// memory.
	// It fails with the reader's error when reading fails.
	Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.PutMeta) (blob.Object, error)
	// URI is the address of key recorded in events.
	URI(key string) string
}

// Source opens the image at a URL. fetch.HTTPSource and fetch.S3Source
// implement it; their errors tell permanent from transient failures
// (fetch.IsPermanent) and never contain a query string.
type Source interface {
	Open(ctx context.Context, rawURL string) (*fetch.Body, error)
}

// errNoSource: an image URL of a scheme no source is configured for.
// Permanent.
var errNoSource = errors.New("archiver: no source for this URL scheme")

// maxURL bounds the length of an image URL. Signed URLs are far shorter;
// a longer one is not fetched.
const maxURL = 8 << 10

// sources routes an image URL to the source of its scheme.
type sources map[string]Source

func (s sources) open(ctx context.Context, rawURL string) (*fetch.Body, error) {
	if len(rawURL) > maxURL {
		return nil, fmt.Errorf("%w: URL longer than %d bytes", fetch.ErrUnsupported, maxURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: unparsable URL", fetch.ErrUnsupported)
	}
	src, ok := s[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("%w (%s): %w", errNoSource, u.Scheme, fetch.ErrPermanent)
	}
	return src.Open(ctx, rawURL)
}

// hostOf is the source host of an image URL for the per-host limit of
// workers: host:port of an http(s) URL, lower case; "" (no limit) for
// s3:// URIs, read from the operator's own endpoint.
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" {
		return ""
	}
	return strings.ToLower(u.Host)
}

// limits are the fetch limits of archive.fetch_timeout, min_rate and
// min_rate_window.
func limits(a config.Archive) fetch.Limits {
	l := fetch.Limits{Timeout: a.FetchTimeout.D(), MinRate: a.MinRate, RateWindow: a.MinRateWindow.D()}
	if l.MinRate == 0 {
		l.MinRate = -1 // archive.min_rate: 0 means no minimum
	}
	return l
}

// newSources builds the http(s) source with the SSRF guard of
// archive.allow_hosts, and the s3 source when archive.source_s3 has an
// endpoint; both with the fetch limits.
func newSources(a config.Archive, httpCfg func(*fetch.HTTPConfig)) (sources, error) {
	hc := fetch.HTTPConfig{AllowHosts: a.AllowHosts, MaxBytes: a.MaxBytes, Limits: limits(a)}
	if httpCfg != nil {
		httpCfg(&hc)
	}
	h, err := fetch.NewHTTPSource(hc)
	if err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	s := sources{"http": h, "https": h}
	if a.SourceS3.Endpoint != "" {
		s3, err := fetch.NewS3Source(fetch.S3Config{
			Endpoint: a.SourceS3.Endpoint, AccessKey: a.SourceS3.AccessKey, SecretKey: a.SourceS3.SecretKey.Reveal(),
			Secure: a.SourceS3.Secure, Region: a.SourceS3.Region, MaxBytes: a.MaxBytes, Limits: limits(a),
		})
		if err != nil {
			return nil, fmt.Errorf("archiver: %w", err)
		}
		s["s3"] = s3
	}
	return s, nil
}

// NewStore returns the sink of the configuration, ready for use: the bucket
// of archive.s3 (created if missing) when its endpoint is set, else the
// directory archive.dir (created if missing). Errors of an unreachable S3
// service are worth retrying.
func NewStore(ctx context.Context, a config.Archive) (BlobStore, error) {
	if a.S3.Endpoint != "" {
		s, err := s3store.NewFromConfig(s3store.Config{
			Endpoint: a.S3.Endpoint, Bucket: a.S3.Bucket, AccessKey: a.S3.AccessKey, SecretKey: a.S3.SecretKey.Reveal(),
			Secure: a.S3.Secure, Region: a.S3.Region,
		}, s3store.Options{})
		if err != nil {
			return nil, fmt.Errorf("archiver: %w", err)
		}
		if err := s.EnsureReady(ctx); err != nil {
			return nil, fmt.Errorf("archiver: %w", err)
		}
		return s, nil
	}
	d, err := dirstore.New(a.Dir)
	if err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	if err := d.EnsureReady(ctx); err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	return d, nil
}
