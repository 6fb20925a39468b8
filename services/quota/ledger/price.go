package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// ErrBadPrice is returned (wrapped) by ParsePrice for a request whose price
// cannot be computed: a batch_size or n_iter that is negative, fractional,
// not a number, of the wrong JSON type, or too large; a body that starts as a
// JSON object but is not valid JSON; or a per-image price below 1. Its text is
// readable: callers refuse the request (apiAccessPreInvoke: success false with
// the error as errMessage; control config and pre-check: disabled).
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
//   - An empty body, or one that is not a JSON object (apiAccessPreInvoke
//     carries the user's request in no standard format), is one image. A body
//     whose first non-space byte is '{' must be valid JSON, otherwise it is
//     refused: a request the backend could read differently must not be
//     priced as one image.
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
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return 1, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
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
