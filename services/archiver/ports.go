package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/sdevents/sdevents/pkg/blob"
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
	// EnsureReady creates the bucket or directory when it is missing. New
	// calls it; errors of an unreachable S3 service are worth retrying.
	EnsureReady(ctx context.Context) error
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

// newSources builds the http(s) source with the SSRF guard of
// cfg.AllowHosts, and the s3 source when cfg.SourceS3 has an endpoint; both
// with the fetch limits.
func newSources(cfg Config, httpCfg func(*fetch.HTTPConfig)) (sources, error) {
	hc := fetch.HTTPConfig{AllowHosts: cfg.AllowHosts, MaxBytes: cfg.MaxBytes, Limits: cfg.Limits}
	if httpCfg != nil {
		httpCfg(&hc)
	}
	h, err := fetch.NewHTTPSource(hc)
	if err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	s := sources{"http": h, "https": h}
	if cfg.SourceS3.Endpoint != "" {
		sc := cfg.SourceS3
		sc.MaxBytes, sc.Limits = cfg.MaxBytes, cfg.Limits
		s3, err := fetch.NewS3Source(sc)
		if err != nil {
			return nil, fmt.Errorf("archiver: %w", err)
		}
		s["s3"] = s3
	}
	return s, nil
}
