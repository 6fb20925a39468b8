// Package dirstore stores archive objects as files in a local directory, the
// sink of a single-machine install.
//
// Layout: the object with key "a/b/c.png" is the file <dir>/a/b/c.png; its
// metadata is the JSON sidecar <dir>/a/b/c.png.meta.json:
//
//	{"sha256": "<hex>", "size": 123, "content_type": "image/png",
//	 "metadata": {"Source-Url": "...", "Width": "512"}}
//
// Writes are atomic: content and sidecar are written to temporary files
// (".<name>.tmp-*", in the same directory, never a valid key), fsynced,
// and renamed into place, content first, then the directory is fsynced. The
// sidecar is the commit point: an object exists only when its sidecar exists
// and records the size of the content file, so a crash between the two
// renames leaves an object that Stat reports as absent (and that the next
// Put replaces). Temporary files left by a crash are not cleaned up.
//
// Concurrent Puts of the same key are safe; the last rename wins, and every
// reader sees one complete version.
package dirstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sdevents/sdevents/pkg/blob"
)

const sidecarSuffix = ".meta.json"

// Store is a directory of objects. It is safe for concurrent use.
type Store struct {
	root string // absolute, cleaned
}

// sidecar is the JSON form of an object's metadata.
type sidecar struct {
	SHA256      string            `json:"sha256"`
	Size        int64             `json:"size"`
	ContentType string            `json:"content_type,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// New returns a store rooted at dir, made absolute against the working
// directory. It does not touch the file system; call EnsureReady.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("dirstore: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("dirstore: %w", err)
	}
	return &Store{root: abs}, nil
}

// Root returns the absolute directory of the store.
func (s *Store) Root() string { return s.root }

// EnsureReady creates the directory (and its parents) if missing.
func (s *Store) EnsureReady(ctx context.Context) error {
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		return fmt.Errorf("dirstore: %w", err)
	}
	return nil
}

// URI returns "file://" and the absolute path of key's file (percent-encoded
// where a URI needs it). It does not validate key.
func (s *Store) URI(key string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(s.path(key))}).String()
}

func (s *Store) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

// Stat describes the object stored under key: ErrNotFound when there is none
// (or only a half-written one), ErrInvalidKey for a refused key.
func (s *Store) Stat(ctx context.Context, key string) (blob.Object, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Object{}, err
	}
	p := s.path(key)
	fi, err := os.Stat(p)
	if err != nil {
		return blob.Object{}, s.fsErr(key, err)
	}
	return s.object(key, p, fi.Size())
}

// object reads the sidecar of key and checks it against the content size.
func (s *Store) object(key, p string, size int64) (blob.Object, error) {
	raw, err := os.ReadFile(p + sidecarSuffix)
	if err != nil {
		return blob.Object{}, s.fsErr(key, err)
	}
	var sc sidecar
	if err := json.Unmarshal(raw, &sc); err != nil {
		return blob.Object{}, fmt.Errorf("dirstore: sidecar of %q: %w", key, err)
	}
	if sc.Size != size {
		// Half-written by a crash or being replaced right now.
		return blob.Object{}, fmt.Errorf("%w: %q (content and sidecar disagree)", blob.ErrNotFound, key)
	}
	if sc.Metadata == nil {
		sc.Metadata = map[string]string{}
	}
	return blob.Object{Key: key, Size: sc.Size, SHA256: sc.SHA256, ContentType: sc.ContentType, Metadata: sc.Metadata}, nil
}

func (s *Store) fsErr(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w: %q", blob.ErrNotFound, key)
	}
	return fmt.Errorf("dirstore: %w", err)
}

// Get opens the object stored under key. The caller must close the reader.
// Errors: ErrNotFound, ErrInvalidKey, or an I/O error.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Object, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, blob.Object{}, err
	}
	p := s.path(key)
	// A concurrent Put may swap content and sidecar between our two opens;
	// the size check in object catches most of that, a retry the rest.
	var lastErr error
	for range 3 {
		f, err := os.Open(p)
		if err != nil {
			return nil, blob.Object{}, s.fsErr(key, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, blob.Object{}, fmt.Errorf("dirstore: %w", err)
		}
		obj, err := s.object(key, p, fi.Size())
		if err == nil {
			return f, obj, nil
		}
		f.Close()
		lastErr = err
		if !errors.Is(err, blob.ErrNotFound) {
			break
		}
	}
	return nil, blob.Object{}, lastErr
}

// Put streams r into the object under key, replacing any object there, and
// returns what it stored. size is the content length, or -1 when unknown; r
// must yield exactly size bytes when it is known. The SHA-256 is computed on
// the way; memory use does not depend on the object's size. Putting the same
// bytes under the same key again is harmless (idempotent).
//
// Errors: ErrInvalidKey, ErrInvalidMetadata, ErrMismatch (nothing replaced),
// the reader's error (nothing replaced), ctx's error, or an I/O error.
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
	p := s.path(key)
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return blob.Object{}, s.fsErr(key, err)
	}

	h := sha256.New()
	tmp, n, err := writeTemp(dir, filepath.Base(p), io.TeeReader(ctxReader{ctx, r}, h))
	if err != nil {
		return blob.Object{}, err
	}
	defer os.Remove(tmp) // no-op once renamed
	sum := hex.EncodeToString(h.Sum(nil))
	if size >= 0 && n != size {
		return blob.Object{}, fmt.Errorf("%w: %q: read %d bytes, declared %d", blob.ErrMismatch, key, n, size)
	}
	if meta.SHA256 != "" && meta.SHA256 != sum {
		return blob.Object{}, fmt.Errorf("%w: %q: sha256 %s, declared %s", blob.ErrMismatch, key, sum, meta.SHA256)
	}

	ct := meta.ContentType
	if ct == "" {
		ct = blob.DefaultContentType
	}
	sc := sidecar{SHA256: sum, Size: n, ContentType: ct, Metadata: md}
	raw, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return blob.Object{}, fmt.Errorf("dirstore: %w", err)
	}
	tmpMeta, _, err := writeTemp(dir, filepath.Base(p)+sidecarSuffix, bytes.NewReader(raw))
	if err != nil {
		return blob.Object{}, err
	}
	defer os.Remove(tmpMeta)
	if err := ctx.Err(); err != nil {
		return blob.Object{}, err
	}
	if err := os.Rename(tmp, p); err != nil {
		return blob.Object{}, fmt.Errorf("dirstore: %w", err)
	}
	if err := os.Rename(tmpMeta, p+sidecarSuffix); err != nil {
		return blob.Object{}, fmt.Errorf("dirstore: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return blob.Object{}, err
	}
	return blob.Object{Key: key, Size: n, SHA256: sum, ContentType: ct, Metadata: md}, nil
}

// writeTemp copies r into a new fsynced temporary file in dir and returns its
// path and length. On error the file is removed.
func writeTemp(dir, base string, r io.Reader) (path string, n int64, err error) {
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", 0, fmt.Errorf("dirstore: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// Copy through a fixed buffer: neither side's ReaderFrom/WriterTo may
	// decide how much to hold.
	buf := make([]byte, 64<<10)
	n, err = io.CopyBuffer(struct{ io.Writer }{f}, struct{ io.Reader }{r}, buf)
	if err != nil {
		return "", 0, err
	}
	if err = f.Sync(); err != nil {
		return "", 0, fmt.Errorf("dirstore: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", 0, fmt.Errorf("dirstore: %w", err)
	}
	return f.Name(), n, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("dirstore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("dirstore: sync %s: %w", dir, err)
	}
	return nil
}

// ctxReader fails reads once ctx is done, so a cancelled Put stops promptly
// even when the source itself does not watch ctx.
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
