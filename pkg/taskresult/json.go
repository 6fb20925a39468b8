package taskresult

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// object decodes raw as a JSON object, keeping numbers as json.Number. ok is
// false when raw is not an object.
func object(raw []byte) (map[string]json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, false
	}
	return m, true
}

// kind returns the JSON kind of raw: "string", "number", "bool", "null",
// "object", "array", or "" for nothing.
func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// MaxTextLen is the longest string, in bytes once decoded, that the parsers
// read from a field; a longer one is left empty, with a problem noted.
const MaxTextLen = 8192

// MaxNumberLen is the longest number literal, in characters, that the
// parsers read (NumberText); a longer one is not a number they read, with a
// problem noted. It keeps the cost of a literal proportional to its length:
// exact decimal arithmetic on a literal of n digits costs about n².
const MaxNumberLen = 32

// str returns raw as a string when it is a JSON string of at most
// MaxTextLen bytes.
func str(raw json.RawMessage) (string, bool) {
	if kind(raw) != "string" {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || len(s) > MaxTextLen {
		return "", false
	}
	return s, true
}

// describe says why raw could not be read as text or a number, for a
// problem line: "is a <kind>", or what bound it exceeds. It never quotes
// the value.
func describe(raw json.RawMessage) string {
	switch k := kind(raw); k {
	case "string":
		return fmt.Sprintf("is longer than %d bytes", MaxTextLen)
	case "number":
		if len(bytes.TrimSpace(raw)) > MaxNumberLen {
			return fmt.Sprintf("is a number longer than %d characters", MaxNumberLen)
		}
		return "is not a number"
	default:
		return "is a " + k
	}
}

// parseRat reads an exact decimal; tests replace it to see what it is given.
var parseRat = func(s string) (*big.Rat, bool) { return new(big.Rat).SetString(s) }

// intLiteral matches a JSON integer without fraction or exponent.
var intLiteral = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// maxExpandedExponent bounds the exponent NumberText expands to digits, so a
// literal like 1e100000 stays short.
const maxExpandedExponent = 30

// NumberText returns a JSON number literal as decimal text, never in float
// formatting: integers are kept digit for digit (12345678901234567890 stays
// exact), an integral value written with a fraction or an exponent is
// expanded (1e6 and 1000000.0 become "1000000"), and anything else (1.5,
// 1e-3, 1e100) is returned as written. ok is false for a non-number and for
// a literal longer than MaxNumberLen characters, which is refused before it
// is read.
func NumberText(literal string) (string, bool) {
	literal = strings.TrimSpace(literal)
	if len(literal) > MaxNumberLen {
		return "", false
	}
	if intLiteral.MatchString(literal) {
		return literal, true
	}
	if !json.Valid([]byte(literal)) || kind(json.RawMessage(literal)) != "number" {
		return "", false
	}
	if i := strings.IndexAny(literal, "eE"); i >= 0 {
		exp, err := strconv.Atoi(strings.TrimPrefix(literal[i+1:], "+"))
		if err != nil || exp > maxExpandedExponent || exp < -maxExpandedExponent {
			return literal, true
		}
	}
	r, ok := parseRat(literal)
	if !ok || !r.IsInt() {
		return literal, true
	}
	return r.Num().String(), true
}

// text returns raw as text for an identifier-like field: a string as is, a
// number as NumberText, a bool as "true"/"false", null or nothing as "".
// Objects and arrays come back as compact JSON with ok false; a string
// longer than MaxTextLen, or a number longer than MaxNumberLen, as "" with
// ok false (describe says why).
func text(raw json.RawMessage) (string, bool) {
	switch kind(raw) {
	case "", "null":
		return "", true
	case "string":
		return str(raw)
	case "number":
		return NumberText(string(raw))
	case "bool":
		return strings.TrimSpace(string(raw)), true
	default:
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil || b.Len() > MaxTextLen {
			return "", false
		}
		return b.String(), false
	}
}

// boolean reads a JSON bool, or a string "true"/"false" (any case, trimmed).
func boolean(raw json.RawMessage) (bool, bool) {
	switch kind(raw) {
	case "bool":
		var b bool
		err := json.Unmarshal(raw, &b)
		return b, err == nil
	case "string":
		s, _ := str(raw)
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

// dimension reads a width or height: a non-negative integer given as a JSON
// number (512 or 512.0) or a string of one ("512", " 512 "). ok is false, and
// the value 0, for anything else.
func dimension(raw json.RawMessage) (int, bool) {
	var s string
	switch kind(raw) {
	case "", "null":
		return 0, true
	case "number":
		s = string(raw)
	case "string":
		s, _ = str(raw)
		s = strings.TrimSpace(s)
	default:
		return 0, false
	}
	t, ok := NumberText(s)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt32 {
		return 0, false
	}
	return int(n), true
}
