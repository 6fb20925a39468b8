package ledger

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// ErrBadPrice is returned (wrapped) by ParsePrice for a request whose price
// cannot be computed: a body that is not text in UTF-8, UTF-16 or UTF-32; a
// batch_size or n_iter that is negative, fractional, not a number, of the
// wrong JSON type, or too large; a body that starts as a JSON object but is
// not valid JSON; or a per-image price below 1. Its text is readable:
// callers refuse the request (apiAccessPreInvoke: success false with the
// error as errMessage; control config and pre-check: disabled).
var ErrBadPrice = errors.New("cannot price this request")

// MaxImages bounds the images of one request: batch_size × n_iter.
const MaxImages = 10_000

// countFields are the request fields whose product is the image count.
var countFields = [...]string{"batch_size", "n_iter"}

// ParsePrice returns the price in credits of a generation request body and
// its image count: images = max(1, batch_size) × max(1, n_iter), credits =
// images × perImage. A request is never free: credits ≥ perImage ≥ 1.
//
// The body is read as follows:
//
//   - It is decoded as the platform's JSON reader decodes bytes (Python's
//     json.loads): UTF-32 or UTF-16 when it starts with their byte order
//     mark, UTF-8 after a UTF-8 one, UTF-16 or UTF-32 (either byte order)
//     when its first bytes hold the zero bytes of an ASCII character in
//     them, UTF-8 otherwise; unpaired surrogates pass. A body that does not
//     decode is refused.
//   - An empty text, or one that is not a JSON object (apiAccessPreInvoke
//     carries the user's request in no standard format), is one image. A
//     text whose first character other than JSON white space and U+FEFF is
//     '{' must be valid JSON, otherwise it is refused: a request the backend
//     could read differently must not be priced as one image.
//   - Each field is looked up at the top level and in the "param" object
//     (sdImgGenControlConfig and sdPreInvoke nest the request there; param may
//     also be a JSON string holding an object). When both hold a value the
//     larger one counts, so that neither place can be used to pay less. A
//     param of any other type is ignored. Keys match exactly.
//   - A value is a JSON number or a string holding a JSON number ("3"), with
//     an integral value: 2, 2.0 and 2e0 are 2, 2.5 is refused. Zero counts as
//     1; null is absent. Negative values, booleans, arrays, objects,
//     non-numeric strings and values giving more than MaxImages images are
//     refused with ErrBadPrice.
func ParsePrice(body []byte, perImage int64) (credits int64, images int64, err error) {
	if perImage < 1 || perImage > MaxCredits {
		return 0, 0, fmt.Errorf("%w: the price per image (%d) is not configured", ErrBadPrice, perImage)
	}
	images, err = countImages(body)
	if err != nil {
		return 0, 0, err
	}
	if images > MaxCredits/perImage {
		return 0, 0, fmt.Errorf("%w: %d images at %d credits each is too expensive", ErrBadPrice, images, perImage)
	}
	return images * perImage, images, nil
}

// countImages implements ParsePrice's image count.
func countImages(body []byte) (int64, error) {
	text, err := decodeText(body)
	if err != nil {
		return 0, err
	}
	trimmed := bytes.TrimLeft(text, " \t\r\n\uFEFF")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return 1, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(text, &top); err != nil {
		return 0, fmt.Errorf("%w: the request is not valid JSON", ErrBadPrice)
	}
	param := paramObject(top["param"])
	images := int64(1)
	for _, name := range countFields {
		n := int64(1)
		for _, src := range []struct {
			prefix string
			obj    map[string]json.RawMessage
		}{{"", top}, {"param.", param}} {
			raw, present := src.obj[name]
			if !present {
				continue
			}
			v, err := parseCount(src.prefix+name, raw)
			if err != nil {
				return 0, err
			}
			n = max(n, v)
		}
		images *= n // each factor ≤ MaxImages: no overflow
		if images > MaxImages {
			return 0, fmt.Errorf("%w: %d images requested, at most %d per request", ErrBadPrice, images, MaxImages)
		}
	}
	return images, nil
}

// paramObject returns the fields of a param value that is an object or a
// string holding one; nil otherwise.
func paramObject(raw json.RawMessage) map[string]json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil
		}
		raw = bytes.TrimSpace([]byte(s))
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	return obj
}

// parseCount reads one count field: a JSON number or numeric string with an
// integral value in [0, MaxImages], or null (1). The result is at least 1.
func parseCount(name string, raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	var text string
	switch {
	case len(raw) == 0:
		return 0, fmt.Errorf("%w: %s is empty", ErrBadPrice, name)
	case string(raw) == "null":
		return 1, nil
	case raw[0] == '"':
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, fmt.Errorf("%w: %s is not a number", ErrBadPrice, name)
		}
		if !isJSONNumber(text) {
			return 0, fmt.Errorf("%w: %s is %q, not a number", ErrBadPrice, name, clip(text))
		}
	case raw[0] == '-' || ('0' <= raw[0] && raw[0] <= '9'):
		text = string(raw)
	default:
		return 0, fmt.Errorf("%w: %s is not a number", ErrBadPrice, name)
	}
	// ParseFloat reads the number as Python's json module does for floats;
	// exact integers up to MaxImages are exact doubles.
	f, err := strconv.ParseFloat(text, 64)
	switch {
	case err != nil || f > MaxImages:
		return 0, fmt.Errorf("%w: %s is %s, more than %d images", ErrBadPrice, name, clip(text), MaxImages)
	case f < 0:
		return 0, fmt.Errorf("%w: %s is %s, a negative number", ErrBadPrice, name, clip(text))
	case f != math.Trunc(f):
		return 0, fmt.Errorf("%w: %s is %s, not a whole number", ErrBadPrice, name, clip(text))
	}
	return max(1, int64(f)), nil
}

// isJSONNumber reports whether s is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s string) bool {
	i := 0
	digits := func() int {
		start := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch n := digits(); {
	case n == 0:
		return false
	case n > 1 && s[i-n] == '0':
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// clip shortens a user-supplied value for an error message.
func clip(s string) string {
	const limit = 24
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}

// Byte order marks, as Python's codecs module names them.
var (
	bomUTF32BE = []byte{0x00, 0x00, 0xFE, 0xFF}
	bomUTF32LE = []byte{0xFF, 0xFE, 0x00, 0x00}
	bomUTF16BE = []byte{0xFE, 0xFF}
	bomUTF16LE = []byte{0xFF, 0xFE}
	bomUTF8    = []byte{0xEF, 0xBB, 0xBF}
)

// decodeText returns body as UTF-8 decoded the way Python's json.loads
// decodes bytes: the encoding chosen by json.detect_encoding (CPython 3.6
// to 3.13), decoded with the "surrogatepass" error handler. Unpaired
// surrogates come out as their three-byte encodings (which encoding/json
// accepts inside strings only, as Python's scanner does). It returns body
// itself for UTF-8 without a byte order mark, and an error wrapping
// ErrBadPrice naming the encoding when body does not decode.
func decodeText(body []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(body, bomUTF32BE):
		return decodeUTF32(body[4:], binary.BigEndian)
	case bytes.HasPrefix(body, bomUTF32LE):
		return decodeUTF32(body[4:], binary.LittleEndian)
	case bytes.HasPrefix(body, bomUTF16BE):
		return decodeUTF16(body[2:], binary.BigEndian)
	case bytes.HasPrefix(body, bomUTF16LE):
		return decodeUTF16(body[2:], binary.LittleEndian)
	case bytes.HasPrefix(body, bomUTF8):
		return checkUTF8(body[3:])
	}
	// Without a mark, the first character is ASCII (JSON text starts with
	// one): its zero bytes tell the encoding.
	switch {
	case len(body) >= 4 && body[0] == 0 && body[1] != 0:
		return decodeUTF16(body, binary.BigEndian)
	case len(body) >= 4 && body[0] == 0:
		return decodeUTF32(body, binary.BigEndian)
	case len(body) >= 4 && body[1] == 0 && (body[2] != 0 || body[3] != 0):
		return decodeUTF16(body, binary.LittleEndian)
	case len(body) >= 4 && body[1] == 0:
		return decodeUTF32(body, binary.LittleEndian)
	case len(body) == 2 && body[0] == 0:
		return decodeUTF16(body, binary.BigEndian)
	case len(body) == 2 && body[1] == 0:
		return decodeUTF16(body, binary.LittleEndian)
	}
	return checkUTF8(body)
}

// errText is the refusal of a body that is not text in encoding.
func errText(encoding string) error {
	return fmt.Errorf("%w: the request is not valid %s text", ErrBadPrice, encoding)
}

// checkUTF8 returns b when it is UTF-8 in which surrogates may be encoded
// (what Python's UTF-8 decoder accepts with surrogatepass).
func checkUTF8(b []byte) ([]byte, error) {
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			if len(b)-i < 3 || b[i] != 0xED || b[i+1] < 0xA0 || b[i+1] > 0xBF || b[i+2] < 0x80 || b[i+2] > 0xBF {
				return nil, errText("UTF-8")
			}
			n = 3 // a surrogate, U+D800 to U+DFFF
		}
		i += n
	}
	return b, nil
}

// decodeUTF16 decodes UTF-16 in the given byte order, passing unpaired
// surrogates. An odd length does not decode.
func decodeUTF16(b []byte, order binary.ByteOrder) ([]byte, error) {
	if len(b)%2 != 0 {
		return nil, errText("UTF-16")
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i += 2 {
		u := rune(order.Uint16(b[i:]))
		if 0xD800 <= u && u < 0xDC00 && i+4 <= len(b) {
			if v := rune(order.Uint16(b[i+2:])); 0xDC00 <= v && v < 0xE000 {
				out = utf8.AppendRune(out, 0x10000+(u-0xD800)<<10+(v-0xDC00))
				i += 2
				continue
			}
		}
		out = appendCodePoint(out, u)
	}
	return out, nil
}

// decodeUTF32 decodes UTF-32 in the given byte order, passing surrogates.
// A length that is not a multiple of 4, or a code point above U+10FFFF,
// does not decode.
func decodeUTF32(b []byte, order binary.ByteOrder) ([]byte, error) {
	if len(b)%4 != 0 {
		return nil, errText("UTF-32")
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i += 4 {
		u := order.Uint32(b[i:])
		if u > utf8.MaxRune {
			return nil, errText("UTF-32")
		}
		out = appendCodePoint(out, rune(u))
	}
	return out, nil
}

// appendCodePoint appends the UTF-8 encoding of r to out, surrogates
// included (utf8.AppendRune writes U+FFFD for those).
func appendCodePoint(out []byte, r rune) []byte {
	if 0xD800 <= r && r < 0xE000 {
		return append(out, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
	}
	return utf8.AppendRune(out, r)
}
