package archiver

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"
	"time"
)

// maxComponent bounds one component of an object key, in bytes. A longer
// value is cut and given a hash suffix, so distinct values stay distinct.
const maxComponent = 96

// ObjectKey returns the key of an image in the archive:
//
//	<account>/<yyyy>/<mm>/<dd>/<task>/<image>.<ext>
//
// The date is the UTC date of at, the time of the INGRESS event (ce-time), so
// every redelivery of the event computes the same key. Each component is
// sanitized with Component; ext is one of png, jpg, gif, webp or img.
func ObjectKey(account string, at time.Time, task, image, ext string) string {
	at = at.UTC()
	return strings.Join([]string{
		Component(account),
		at.Format("2006"), at.Format("01"), at.Format("02"),
		Component(task),
		Component(image) + "." + ext,
	}, "/")
}

// Component makes s safe as one segment of an object key on every store and
// in a URI: bytes outside [A-Za-z0-9_.-] become '_', a leading '.' becomes
// '_', an empty value is "_", and a value longer than 96 bytes is cut to 79
// bytes followed by '-' and 16 hex digits of its SHA-256. Distinct inputs
// may map to the same component only through the replaced bytes.
func Component(s string) string {
	if s == "" {
		return "_"
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			b[i] = '_'
		}
	}
	if b[0] == '.' {
		b[0] = '_'
	}
	if len(b) > maxComponent {
		sum := sha256.Sum256([]byte(s))
		b = append(b[:maxComponent-17], '-')
		b = append(b, hex.EncodeToString(sum[:8])...)
	}
	return string(b)
}

// extOf normalizes an image type or file extension ("PNG", ".jpeg",
// "image/webp") to the extension used in keys: png, jpg, gif or webp; ""
// for anything else.
func extOf(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "image/")
	s = strings.TrimPrefix(s, ".")
	switch s {
	case "png":
		return "png"
	case "jpg", "jpeg":
		return "jpg"
	case "gif":
		return "gif"
	case "webp":
		return "webp"
	}
	return ""
}

// extFallback is the extension of an image whose type is not declared.
const extFallback = "img"

// pathExt returns the normalized extension of the last segment of p.
func pathExt(p string) string { return extOf(path.Ext(p)) }

// stem returns the last segment of p without its extension.
func stem(p string) string {
	base := path.Base(p)
	if base == "/" || base == "." {
		return ""
	}
	return strings.TrimSuffix(base, path.Ext(base))
}

// EventID returns the id of the one ARCHIVE event of the image stored under
// key: "ar-" and the first 128 bits of SHA-256(key) in hex. It is the
// event's ce-id and Nats-Msg-Id, and its key in the ARCHIVE_KEYS bucket.
func EventID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "ar-" + hex.EncodeToString(sum[:16])
}

// hash8 returns 16 hex digits of SHA-256(s).
func hash8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
