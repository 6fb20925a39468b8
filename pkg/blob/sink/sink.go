// Package sink opens the archive sink of a deployment: the bucket of an
// S3-compatible endpoint (s3store) when one is configured, else a local
// directory (dirstore). A process opens it once and hands it to every
// service that uses it: the archiver writes to it, the console reads from
// it.
package sink

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/sdevents/sdevents/pkg/blob"
	"github.com/sdevents/sdevents/pkg/blob/dirstore"
	"github.com/sdevents/sdevents/pkg/blob/s3store"
)

// ErrNoSink is returned by Open when the configuration names neither a
// bucket endpoint nor a directory. The configuration must be fixed.
var ErrNoSink = errors.New("sink: neither an S3 endpoint nor a directory")

// Store is an archive sink. dirstore.Store and s3store.Store implement it;
// both pass the blobtest contract suite.
type Store interface {
	// EnsureReady creates the bucket or the directory when it is missing.
	EnsureReady(ctx context.Context) error
	// Stat describes the object under key, or fails with blob.ErrNotFound.
	Stat(ctx context.Context, key string) (blob.Object, error)
	// Get opens the object under key; the caller closes it.
	Get(ctx context.Context, key string) (io.ReadCloser, blob.Object, error)
	// Put streams r into the object under key.
	Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.PutMeta) (blob.Object, error)
	// URI is the address of key recorded in events: s3://<bucket>/<key>
	// or file:// and the absolute path.
	URI(key string) string
}

// Config says where the sink is.
type Config struct {
	// S3 is the bucket of the sink when its Endpoint is set.
	S3 s3store.Config
	// Dir is the directory of the sink otherwise.
	Dir string
}

// Open returns the sink of cfg. It does no I/O: the bucket or directory is
// created by EnsureReady, which a writer calls, and an unreachable service
// shows in the first request.
func Open(cfg Config) (Store, error) {
	if cfg.S3.Endpoint != "" {
		s, err := s3store.NewFromConfig(cfg.S3, s3store.Options{})
		if err != nil {
			return nil, fmt.Errorf("sink: %w", err)
		}
		return s, nil
	}
	if cfg.Dir == "" {
		return nil, ErrNoSink
	}
	d, err := dirstore.New(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	return d, nil
}
