package console

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/event"
)

// Redacted replaces every value the console refuses to show.
const Redacted = "[redacted]"

// HeaderLine is one header shown to an operator.
type HeaderLine struct {
	Key   string `json:"k"`
	Value string `json:"v"`
}

// secretHeaders are the INGRESS headers whose values are credentials or
// would let someone replay a request: the (encrypted) user token and the
// signature. Any header whose name mentions a token, a signature, a secret,
// a password or authorization is treated the same way.
var secretHeaders = []string{event.HeaderAPIToken, event.HeaderSign}

func secretHeader(k string) bool {
	l := strings.ToLower(k)
	if slices.Contains(secretHeaders, l) {
		return true
	}
	for _, w := range []string{"token", "sign", "secret", "password", "authorization", "credential"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// ShowHeaders returns h sorted by name, decoded, with every secret value
// replaced by Redacted and the query of every URL in the others too (see
// Redact). The header stays visible: an operator sees that the request
// carried it.
func ShowHeaders(h nats.Header) []HeaderLine {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []HeaderLine
	for _, k := range keys {
		for _, v := range h[k] {
			if secretHeader(k) {
				v = Redacted
			} else if d, err := event.Decode(v); err == nil {
				v = Redact(d)
			} else {
				v = Redact(v)
			}
			out = append(out, HeaderLine{Key: k, Value: v})
		}
	}
	return out
}

var (
	// urlQueryRE finds the query string of an http(s) URL in text: image
	// URLs carry signatures that grant access to the image. Whatever the
	// path holds — spaces, quotes, brackets, JSON escapes (\", \/, \u003c,
	// and their doubles in a JSON string holding JSON) — the first '?' after
	// the scheme on the same line starts the query; a '?' of the text after
	// a URL without a query is taken for one too, which only hides more.
	// The query reads JSON escapes (\u0026, \/) as part of it, and stops
	// at a space, a quote, an angle bracket or another escape.
	urlQueryRE = regexp.MustCompile(`(https?:(?:\\*/){2}(?:[^\n?\\]|\\+[^\n])*)\?(?:[^\s"'<>\\]|\\+u[0-9a-fA-F]{4}|\\+/)*`)
	// secretFieldRE finds JSON string members whose name mentions a token,
	// a signature, a secret or a password (SNS confirmation tokens and
	// signatures, anything a platform may add).
	secretFieldRE = regexp.MustCompile(`("(?i:[a-z0-9_\-]*(?:token|sign|secret|password|credential)[a-z0-9_\-]*)"\s*:\s*)"(?:[^"\\]|\\.)*"`)
	// secretTailRE finds such a member whose value a cut left unterminated.
	secretTailRE = regexp.MustCompile(`("(?i:[a-z0-9_\-]*(?:token|sign|secret|password|credential)[a-z0-9_\-]*)"\s*:\s*)"(?:[^"\\]|\\.)*\\?$`)
)

// ShowBody returns data as text for an operator: indented when it is JSON,
// cut to limit bytes (on a rune boundary, with a note), with the query
// strings of URLs and the values of secret-looking JSON members replaced by
// Redacted. Binary data is summarised.
func ShowBody(data []byte, limit int) string {
	if len(data) == 0 {
		return ""
	}
	if !utf8.Valid(data) {
		return "(" + itoa(len(data)) + " bytes of binary data)"
	}
	text := data
	if json.Valid(data) && len(data) <= 256<<10 {
		var b bytes.Buffer
		if json.Indent(&b, data, "", "  ") == nil {
			text = b.Bytes()
		}
	}
	s := Redact(string(text))
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "\n… (" + itoa(len(s)-cut) + " more bytes)"
	}
	return s
}

// Redact replaces URL query strings and secret-looking JSON members in s.
func Redact(s string) string {
	s = urlQueryRE.ReplaceAllString(s, "$1?"+Redacted)
	s = secretFieldRE.ReplaceAllString(s, `$1"`+Redacted+`"`)
	return secretTailRE.ReplaceAllString(s, `$1"`+Redacted+`"`)
}

func itoa(n int) string { return strconv.Itoa(n) }
