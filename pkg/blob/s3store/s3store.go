// Package s3store stores archive objects in a bucket of MinIO, AWS S3 or any
// S3-compatible service, through minio-go.
//
// Metadata is stored as S3 user metadata: the digest as X-Amz-Meta-Sha256,
// each PutMeta.Metadata entry as X-Amz-Meta-<Key> (X-Amz-Meta-Source-Url,
// -Model, -Width, -Height), the content type as Content-Type.
//
// Memory: Put never holds an object. An upload of known size up to PartSize is
// one streamed PUT; anything larger, or of unknown size, is a multipart upload
// that fills one PartSize buffer at a time, so a Put holds at most
// ConcurrentParts × PartSize bytes (16 MiB with the defaults).
//
// Digest: the SHA-256 is computed while the bytes are uploaded. When the
// caller does not know it in advance (PutMeta.SHA256 empty), the object is
// first written without it and then given its full metadata by a copy onto
// itself (on MinIO a metadata-only operation). A crash in between leaves an
// object whose Stat reports an empty SHA256: callers treat that as "not
// archived" and put it again.
package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sdevents/sdevents/pkg/blob"
)

const (
	metaPrefix = "X-Amz-Meta-"
	// DefaultPartSize is the multipart part size unless Options say otherwise.
	DefaultPartSize = 16 << 20
	// MinPartSize is the smallest part size S3 accepts.
	MinPartSize = 5 << 20
)

// Config says where the bucket is.
type Config struct {
	// Endpoint is host:port of the service.
	Endpoint  string
	Bucket    string
	AccessKey string
	SecretKey string
	// Secure selects HTTPS.
	Secure bool
	// Region is optional (MinIO ignores it).
	Region string
}

// Options tune uploads; the zero value means the defaults.
type Options struct {
	// PartSize is the multipart part size, at least MinPartSize; default
	// DefaultPartSize. It is also the largest single PUT.
	PartSize uint64
	// ConcurrentParts is how many parts are buffered and uploaded in
	// parallel (default 1). Memory per Put is ConcurrentParts × PartSize.
	ConcurrentParts uint
}

// Store is one bucket. It is safe for concurrent use.
type Store struct {
	c      *minio.Client
	bucket string
	region string
	opts   Options
}

// New returns a store for bucket through c. It does no I/O; call EnsureReady.
func New(c *minio.Client, bucket string, opts Options) (*Store, error) {
	if c == nil || bucket == "" {
		return nil, errors.New("s3store: client and bucket are required")
	}
	if opts.PartSize == 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.PartSize < MinPartSize {
		return nil, fmt.Errorf("s3store: part size %d below the S3 minimum %d", opts.PartSize, MinPartSize)
	}
	if opts.ConcurrentParts == 0 {
		opts.ConcurrentParts = 1
	}
	return &Store{c: c, bucket: bucket, opts: opts}, nil
}

// NewFromConfig builds a minio-go client from cfg and returns a store for its
// bucket. It does no I/O; call EnsureReady.
func NewFromConfig(cfg Config, opts Options) (*Store, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("s3store: empty endpoint")
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	s, err := New(c, cfg.Bucket, opts)
	if err != nil {
		return nil, err
	}
	s.region = cfg.Region
	return s, nil
}

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.bucket }

// URI returns "s3://<bucket>/<key>". It does not validate key.
func (s *Store) URI(key string) string { return "s3://" + s.bucket + "/" + key }

// EnsureReady creates the bucket unless it exists. A bucket created at the
// same time by another replica is fine. Errors are the service's (network,
// credentials) and are worth retrying.
func (s *Store) EnsureReady(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3store: bucket %s: %w", s.bucket, err)
	}
	if ok {
		return nil
	}
	err = s.c.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
	if err == nil {
		return nil
	}
	switch minio.ToErrorResponse(err).Code {
	case "BucketAlreadyOwnedByYou", "BucketAlreadyExists":
		// A concurrent creator won; BucketAlreadyExists may also mean
		// someone else owns it, which the check below finds out.
		if ok, err2 := s.c.BucketExists(ctx, s.bucket); err2 == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("s3store: create bucket %s: %w", s.bucket, err)
}

// Stat describes the object under key: ErrNotFound when there is none,
// ErrInvalidKey for a refused key, otherwise the service's error.
func (s *Store) Stat(ctx context.Context, key string) (blob.Object, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Object{}, err
	}
	info, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return blob.Object{}, s.err(key, err)
	}
	return toObject(key, info), nil
}

// Get opens the object under key; the caller must close the reader. Errors:
// ErrNotFound, ErrInvalidKey, or the service's error; a failure while reading
// surfaces from Read.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Object, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, blob.Object{}, err
	}
	o, err := s.c.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, blob.Object{}, s.err(key, err)
	}
	info, err := o.Stat() // sends the GET; the body is read lazily
	if err != nil {
		o.Close()
		return nil, blob.Object{}, s.err(key, err)
	}
	return o, toObject(key, info), nil
}

// Put streams r into the object under key, replacing any object there, and
// returns what it stored. size is the content length, or -1 when unknown; r
// must yield exactly size bytes when it is known. Memory is bounded as the
// package comment says. Putting the same bytes under the same key again is
// harmless (idempotent).
//
// Errors: ErrInvalidKey, ErrInvalidMetadata, ErrMismatch (the object is
// removed), the reader's error or ctx's error (a multipart upload is aborted,
// the previous object stays), or the service's error (worth retrying).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, meta blob.PutMeta) (blob.Object, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Object{}, err
	}
	md, err := blob.NormalizeMetadata(meta.Metadata)
	if err != nil {
		return blob.Object{}, err
	}
	if err := blob.ValidateSHA256(meta.SHA256); err != nil {
		return blob.Object{}, err
	}
	ct := meta.ContentType
	if ct == "" {
		ct = blob.DefaultContentType
	}
	user := make(map[string]string, len(md)+1)
	for k, v := range md {
		user[metaPrefix+k] = v
	}
	if meta.SHA256 != "" {
		user[metaPrefix+blob.MetaSHA256] = meta.SHA256
	}

	h := sha256.New()
	// TeeReader hides any ReaderAt of r, which keeps minio-go on its serial
	// paths whose memory is one part.
	body := io.TeeReader(r, h)
	if size >= 0 {
		// Stop at size: a longer reader is caught below, not by net/http.
		body = io.LimitReader(body, size)
	}
	opts := minio.PutObjectOptions{
		ContentType:  ct,
		UserMetadata: user,
		PartSize:     s.opts.PartSize,
		NumThreads:   s.opts.ConcurrentParts,
	}
	if s.opts.ConcurrentParts > 1 {
		opts.ConcurrentStreamParts = true
	}
	info, err := s.c.PutObject(ctx, s.bucket, key, body, size, opts)
	if err != nil {
		if ctx.Err() != nil {
			return blob.Object{}, ctx.Err()
		}
		return blob.Object{}, fmt.Errorf("s3store: put %s: %w", key, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if size >= 0 {
		var one [1]byte
		if n, _ := io.ReadFull(r, one[:]); n > 0 || info.Size != size {
			s.remove(ctx, key)
			return blob.Object{}, fmt.Errorf("%w: %q: more or fewer bytes than the declared %d", blob.ErrMismatch, key, size)
		}
	}
	if meta.SHA256 != "" && meta.SHA256 != sum {
		s.remove(ctx, key)
		return blob.Object{}, fmt.Errorf("%w: %q: sha256 %s, declared %s", blob.ErrMismatch, key, sum, meta.SHA256)
	}
	if meta.SHA256 == "" {
		user[metaPrefix+blob.MetaSHA256] = sum
		_, err := s.c.CopyObject(ctx,
			minio.CopyDestOptions{Bucket: s.bucket, Object: key, UserMetadata: user, ReplaceMetadata: true, ContentType: ct},
			minio.CopySrcOptions{Bucket: s.bucket, Object: key, MatchETag: info.ETag})
		if err != nil && minio.ToErrorResponse(err).Code != "PreconditionFailed" {
			return blob.Object{}, fmt.Errorf("s3store: set digest of %s: %w", key, err)
		}
		// On PreconditionFailed a concurrent Put replaced the object after
		// our upload: ours was stored and superseded, and that Put records
		// the digest of what it wrote.
	}
	return blob.Object{Key: key, Size: info.Size, SHA256: sum, ContentType: ct, Metadata: md}, nil
}

// remove deletes key after a mismatch, even when ctx is already cancelled,
// for at most removeTimeout. Errors are ignored: an object whose digest does
// not match is put again by the caller anyway.
func (s *Store) remove(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	defer cancel()
	_ = s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
}

const removeTimeout = 10 * time.Second

func (s *Store) err(key string, err error) error {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("%w: %q", blob.ErrNotFound, key)
	}
	return fmt.Errorf("s3store: %s: %w", key, err)
}

func toObject(key string, info minio.ObjectInfo) blob.Object {
	o := blob.Object{Key: key, Size: info.Size, ContentType: info.ContentType, Metadata: map[string]string{}}
	for k, vs := range info.Metadata {
		if len(vs) == 0 || len(k) <= len(metaPrefix) || !strings.EqualFold(k[:len(metaPrefix)], metaPrefix) {
			continue
		}
		name := textproto.CanonicalMIMEHeaderKey(k[len(metaPrefix):])
		if name == blob.MetaSHA256 {
			o.SHA256 = strings.ToLower(vs[0])
			continue
		}
		o.Metadata[name] = vs[0]
	}
	return o
}
