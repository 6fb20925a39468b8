// Package s3store stores archive objects in a bucket of MinIO, AWS S3 or any
// S3-compatible service, through minio-go.
//
// Metadata is stored as S3 user metadata: the digest as X-Amz-Meta-Sha256,
// each PutMeta.Metadata entry as X-Amz-Meta-<Key> (X-Amz-Meta-Source-Url,
// -Model, -Width, -Height), the content type as Content-Type. An object of
// at most PartSize bytes also carries the digest as its S3 SHA-256 checksum
// (x-amz-checksum-sha256, base64, read with StatObject's Checksum option).
//
// Digest: Put records the SHA-256 of exactly the bytes stored, so that Stat
// reports it. An object of at most PartSize bytes (every image of a usual
// archive) is read whole into memory first, so its digest is known before
// anything is sent: one PUT stores content and digest together, atomically,
// with no window in which the object exists without its digest. A larger
// object is uploaded while it is read (multipart, digest computed on the
// way) and, unless the caller declared the digest in PutMeta.SHA256, then
// given it by a copy of the object onto itself, conditional on the ETag of
// the upload (MinIO rewrites the data on that copy: only objects over
// PartSize pay it). A crash in between leaves an object whose Stat reports
// an empty SHA256: callers treat that as "not archived" and put it again, as
// they do with an object someone else wrote without the digest.
//
// Memory: a Put holds at most one buffer of its own of up to PartSize bytes,
// or ConcurrentParts × PartSize of minio-go's part buffers (16 MiB with the
// defaults). The exceptions are transient and bounded: an object of unknown
// size grows its buffer by doubling (old and new held for the copy), and one
// over PartSize keeps its first PartSize bytes until they are handed to the
// first part. The buffers of objects up to PartSize are pooled by size class
// (powers of two from 64 KiB, never over PartSize), so a Put of a 2 MB image
// holds 2 MiB.
package s3store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sdevents/sdevents/pkg/blob"
	"github.com/sdevents/sdevents/pkg/s3cred"
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
	Endpoint string
	Bucket   string
	// AccessKey and SecretKey are static keys. When both are empty the
	// AWS credential chain of package s3cred is used (environment, shared
	// credentials file, web identity, instance metadata).
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
	// DefaultPartSize. It is also the largest single PUT, and the largest
	// object Put reads into memory before sending it.
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

// NewFromConfig builds a minio-go client from cfg, with its static keys or
// else the credential chain (s3cred.New), and returns a store for its
// bucket. It does no I/O; call EnsureReady.
func NewFromConfig(cfg Config, opts Options) (*Store, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("s3store: empty endpoint")
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  s3cred.New(cfg.AccessKey, cfg.SecretKey, cfg.Region),
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
// harmless (idempotent); of concurrent Puts of one key the last stored wins,
// each with its own digest.
//
// An object of at most PartSize bytes is read whole before anything is sent,
// then stored by one PUT that carries its digest: it appears with its digest
// or not at all. A larger one is uploaded while it is read and given its
// digest afterwards (see the package comment).
//
// Errors: ErrInvalidKey, ErrInvalidMetadata, ErrMismatch (for an object up to
// PartSize nothing was sent and a previous object stays; a larger one is
// removed), the reader's error or ctx's error (nothing is stored, the
// previous object stays), or the service's error (worth retrying).
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
	p := put{key: key, ct: meta.ContentType, md: md, want: meta.SHA256}
	if p.ct == "" {
		p.ct = blob.DefaultContentType
	}
	limit := int(s.opts.PartSize)
	if size > int64(limit) {
		return s.putStream(ctx, p, r, size)
	}
	r = ctxReader{ctx, r}
	readErr := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("s3store: put %s: %w", key, err)
	}

	var buf *[]byte
	var n int
	if size >= 0 {
		n = int(size)
		if n > 0 {
			buf = getSpool(n, limit)
			if m, err := io.ReadFull(r, (*buf)[:n]); err != nil {
				putSpool(buf)
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return blob.Object{}, fmt.Errorf("%w: %q: read %d bytes, declared %d", blob.ErrMismatch, key, m, size)
				}
				return blob.Object{}, readErr(err)
			}
		}
		var one [1]byte
		if m, err := io.ReadFull(r, one[:]); m > 0 || err != io.EOF {
			if buf != nil {
				putSpool(buf)
			}
			if m > 0 {
				return blob.Object{}, fmt.Errorf("%w: %q: more bytes than the declared %d", blob.ErrMismatch, key, size)
			}
			return blob.Object{}, readErr(err)
		}
	} else {
		var over []byte
		buf, n, over, err = spool(r, limit)
		if err != nil {
			return blob.Object{}, readErr(err)
		}
		if over != nil {
			head := &drainReader{b: buf, n: n}
			defer head.release()
			return s.putStream(ctx, p, io.MultiReader(head, bytes.NewReader(over), r), -1)
		}
	}
	var data []byte
	if buf != nil {
		// Runs after putSpooled returned, which detached its request body.
		defer putSpool(buf)
		data = (*buf)[:n]
	}
	return s.putSpooled(ctx, p, data)
}

// put is what Put stores besides the content.
type put struct {
	key, ct string
	md      map[string]string // normalized
	want    string            // the declared digest, or empty
}

// userMetadata returns the S3 user metadata of p with the digest sum.
func (p put) userMetadata(sum string) map[string]string {
	user := make(map[string]string, len(p.md)+1)
	for k, v := range p.md {
		user[metaPrefix+k] = v
	}
	if sum != "" {
		user[metaPrefix+blob.MetaSHA256] = sum
	}
	return user
}

func (s *Store) putOptions(p put, user map[string]string) minio.PutObjectOptions {
	opts := minio.PutObjectOptions{
		ContentType:  p.ct,
		UserMetadata: user,
		PartSize:     s.opts.PartSize,
		NumThreads:   s.opts.ConcurrentParts,
	}
	if s.opts.ConcurrentParts > 1 {
		opts.ConcurrentStreamParts = true
	}
	return opts
}

// putSpooled stores data, at most PartSize bytes, by one PUT whose metadata
// holds its digest. The request is signed with the digest as its payload
// hash (X-Amz-Content-Sha256) and also carries it as
// X-Amz-Checksum-Sha256: the service refuses the PUT unless the bytes it
// received have that digest. data is not used after putSpooled returns.
func (s *Store) putSpooled(ctx context.Context, p put, data []byte) (blob.Object, error) {
	d := sha256.Sum256(data)
	sum := hex.EncodeToString(d[:])
	if p.want != "" && p.want != sum {
		return blob.Object{}, fmt.Errorf("%w: %q: sha256 %s, declared %s", blob.ErrMismatch, p.key, sum, p.want)
	}
	user := p.userMetadata(sum)
	// An x-amz-checksum- key is sent as is, and keeps minio-go from adding
	// a trailing checksum of its own, which a signed payload cannot carry.
	user[checksumSHA256Header] = base64.StdEncoding.EncodeToString(d[:])
	opts := s.putOptions(p, user)
	opts.DisableContentSha256 = true // no chunked signature: the payload hash is sum
	body := &spoolReader{b: data}
	defer body.detach()
	info, err := minio.Core{Client: s.c}.PutObject(ctx, s.bucket, p.key, body, int64(len(data)), "", sum, opts)
	if err != nil {
		if ctx.Err() != nil {
			return blob.Object{}, ctx.Err()
		}
		return blob.Object{}, fmt.Errorf("s3store: put %s: %w", p.key, err)
	}
	return blob.Object{Key: p.key, Size: info.Size, SHA256: sum, ContentType: p.ct, Metadata: p.md}, nil
}

// checksumSHA256Header is the S3 additional checksum header of SHA-256.
const checksumSHA256Header = "X-Amz-Checksum-Sha256"

// putStream uploads r (size bytes, or -1 when unknown) while it reads it,
// with the declared digest if any, then, when the digest was not declared,
// records the computed one by a copy of the object onto itself.
func (s *Store) putStream(ctx context.Context, p put, r io.Reader, size int64) (blob.Object, error) {
	user := p.userMetadata(p.want)
	h := sha256.New()
	// TeeReader hides any ReaderAt of r, which keeps minio-go on its serial
	// paths whose memory is one part.
	body := io.TeeReader(r, h)
	if size >= 0 {
		// Stop at size: a longer reader is caught below, not by net/http.
		body = io.LimitReader(body, size)
	}
	info, err := s.c.PutObject(ctx, s.bucket, p.key, body, size, s.putOptions(p, user))
	if err != nil {
		if ctx.Err() != nil {
			return blob.Object{}, ctx.Err()
		}
		return blob.Object{}, fmt.Errorf("s3store: put %s: %w", p.key, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if size >= 0 {
		var one [1]byte
		if n, _ := io.ReadFull(r, one[:]); n > 0 || info.Size != size {
			s.remove(ctx, p.key)
			return blob.Object{}, fmt.Errorf("%w: %q: more or fewer bytes than the declared %d", blob.ErrMismatch, p.key, size)
		}
	}
	if p.want != "" && p.want != sum {
		s.remove(ctx, p.key)
		return blob.Object{}, fmt.Errorf("%w: %q: sha256 %s, declared %s", blob.ErrMismatch, p.key, sum, p.want)
	}
	if p.want == "" {
		user[metaPrefix+blob.MetaSHA256] = sum
		_, err := s.c.CopyObject(ctx,
			minio.CopyDestOptions{Bucket: s.bucket, Object: p.key, UserMetadata: user, ReplaceMetadata: true, ContentType: p.ct},
			minio.CopySrcOptions{Bucket: s.bucket, Object: p.key, MatchETag: info.ETag})
		if err != nil && minio.ToErrorResponse(err).Code != "PreconditionFailed" {
			return blob.Object{}, fmt.Errorf("s3store: set digest of %s: %w", p.key, err)
		}
		// On PreconditionFailed a concurrent Put replaced the object after
		// our upload: ours was stored and superseded, and that Put records
		// the digest of what it wrote.
	}
	return blob.Object{Key: p.key, Size: info.Size, SHA256: sum, ContentType: p.ct, Metadata: p.md}, nil
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

// ctxReader fails reads once ctx is done, so that a cancelled Put stops
// spooling even when the source does not watch ctx.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
