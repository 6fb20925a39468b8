// Package blob defines what the archive sinks have in common: the Object they
// describe, the PutMeta a caller supplies, the key rules and the errors callers
// branch on. The stores themselves live in the subpackages dirstore (a local
// directory) and s3store (MinIO or any S3-compatible service); blobtest holds
// the contract suite both pass.
//
// The package is pure: no I/O, no logging.
package blob

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"unicode/utf8"
)

var (
	// ErrNotFound is returned by Stat and Get when no object is stored under
	// the key. Callers archive the object.
	ErrNotFound = errors.New("blob: object not found")
	// ErrInvalidKey is returned by every store method given a key that
	// ValidateKey refuses. It is a programming error: do not retry.
	ErrInvalidKey = errors.New("blob: invalid key")
	// ErrInvalidMetadata is returned by Put when PutMeta cannot be stored as
	// given (see NormalizeMetadata). Do not retry.
	ErrInvalidMetadata = errors.New("blob: invalid metadata")
	// ErrMismatch is returned by Put when the bytes read do not match
	// PutMeta.SHA256 or the declared size. Nothing is stored under the key
	// (a previous object under it may have been replaced or removed on S3).
	// The source changed or is broken: retry from the source.
	ErrMismatch = errors.New("blob: content does not match its declared size or digest")
)

// Object describes a stored object.
type Object struct {
	// Key is the object's key, relative to the bucket or the directory.
	Key string
	// Size is the length of the content in bytes.
	Size int64
	// SHA256 is the lowercase hex SHA-256 of the content. Empty only for an
	// object written by someone else without the digest in its metadata.
	SHA256 string
	// ContentType is the MIME type stored with the object, possibly empty.
	ContentType string
	// Metadata holds the user metadata, keys in canonical header form
	// ("Source-Url"), without the digest (which is SHA256). Never nil for an
	// object returned by a store.
	Metadata map[string]string
}

// PutMeta is what a caller states about an object it puts.
type PutMeta struct {
	// SHA256 is the expected lowercase hex SHA-256 of the content, or empty.
	// Stores always compute the digest of what they read; when SHA256 is set
	// and differs, Put fails with ErrMismatch.
	SHA256 string
	// ContentType is stored with the object; empty means
	// DefaultContentType.
	ContentType string
	// Metadata is stored as user metadata (see NormalizeMetadata for the
	// rules). Callers must not put credentials here: a source URL belongs
	// here only without its query string.
	Metadata map[string]string
}

// Well-known metadata keys, in canonical form.
const (
	MetaSourceURL = "Source-Url"
	MetaModel     = "Model"
	MetaWidth     = "Width"
	MetaHeight    = "Height"
	// MetaSHA256 is reserved: the digest is stored under it by every store
	// (X-Amz-Meta-Sha256 on S3) and reported as Object.SHA256.
	MetaSHA256 = "Sha256"
)

// MaxKeyLen is the longest key accepted, in bytes (the S3 limit).
const MaxKeyLen = 1024

// maxMetaBytes bounds the user metadata (S3 allows 2 KiB in total).
const maxMetaBytes = 2048

// ValidateKey reports whether key can name an object in every store: a
// relative, slash-separated path of at most MaxKeyLen bytes of valid UTF-8,
// no empty segment (no leading, trailing or double slash), no segment that
// starts with a dot (this rules out "." and ".." and leaves dot names to the
// stores' own files), no last segment ending in ".meta.json" (the directory
// store's sidecars), no backslash and no control character. A refused key
// yields an error wrapping ErrInvalidKey.
func ValidateKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > MaxKeyLen:
		return bad("too long")
	case !utf8.ValidString(key):
		return bad("not UTF-8")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return bad("control character or backslash")
		}
	}
	segs := strings.Split(key, "/")
	for _, s := range segs {
		if s == "" {
			return bad("empty path segment or absolute path")
		}
		if s[0] == '.' {
			return bad("path segment starts with a dot")
		}
	}
	if strings.HasSuffix(segs[len(segs)-1], ".meta.json") {
		return bad("reserved suffix .meta.json")
	}
	return nil
}

// NormalizeMetadata returns a copy of m with keys in canonical header form
// ("source-url" becomes "Source-Url"), so that every store returns the same
// keys. Keys must be non-empty and made of ASCII letters, digits and '-';
// values printable ASCII; keys and values together at most 2 KiB; the key
// "Sha256" is reserved. Otherwise the error wraps ErrInvalidMetadata.
func NormalizeMetadata(m map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(m))
	total := 0
	for k, v := range m {
		if k == "" || strings.IndexFunc(k, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
		}) >= 0 {
			return nil, fmt.Errorf("%w: key %q", ErrInvalidMetadata, k)
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				return nil, fmt.Errorf("%w: value of %q is not printable ASCII", ErrInvalidMetadata, k)
			}
		}
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if ck == MetaSHA256 {
			return nil, fmt.Errorf("%w: key %q is reserved, use PutMeta.SHA256", ErrInvalidMetadata, k)
		}
		if _, dup := out[ck]; dup {
			return nil, fmt.Errorf("%w: key %q given twice", ErrInvalidMetadata, ck)
		}
		out[ck] = v
		total += len(ck) + len(v)
	}
	if total > maxMetaBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidMetadata, total, maxMetaBytes)
	}
	return out, nil
}

// ValidateSHA256 reports whether s is empty or 64 lowercase hex digits; the
// error wraps ErrInvalidMetadata.
func ValidateSHA256(s string) error {
	if s == "" {
		return nil
	}
	if len(s) != 64 || strings.IndexFunc(s, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f')
	}) >= 0 {
		return fmt.Errorf("%w: sha256 %q is not 64 lowercase hex digits", ErrInvalidMetadata, s)
	}
	return nil
}

// DefaultContentType is stored when PutMeta.ContentType is empty.
const DefaultContentType = "application/octet-stream"
