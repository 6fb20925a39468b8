// Package event maps sdevents events to NATS messages: the CloudEvents
// attributes as headers in the binary content mode of the CloudEvents NATS
// binding (lower-case ce-* names, datacontenttype included, percent-encoded
// values), and Nats-Msg-Id equal to ce-id for JetStream de-duplication.
package event

import (
	"fmt"
	"maps"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// CloudEvents header names (binary content mode). The NATS binding maps
// every attribute, datacontenttype included, to its name prefixed with
// "ce-"; nats.go header names are case-sensitive, and CloudEvents readers
// look these names up in lower case.
const (
	HeaderSpecVersion     = "ce-specversion"
	HeaderID              = "ce-id"
	HeaderSource          = "ce-source"
	HeaderType            = "ce-type"
	HeaderTime            = "ce-time"
	HeaderSubject         = "ce-subject"
	HeaderDataContentType = "ce-datacontenttype"
)

// Project headers of INGRESS messages.
const (
	HeaderSDSource    = "sd-source"
	HeaderSDAccount   = "sd-account"
	HeaderAPIID       = "sd-api-id"
	HeaderBizType     = "sd-biz-type"
	HeaderInvokeID    = "sd-invoke-id"
	HeaderAPIToken    = "sd-api-token"
	HeaderSign        = "sd-sign"
	HeaderNonce       = "sd-nonce"
	HeaderTimestamp   = "sd-timestamp"
	HeaderSNSType     = "sd-sns-type"
	HeaderSNSMsgID    = "sd-sns-message-id"
	HeaderSNSTopicARN = "sd-sns-topic-arn"
	HeaderTaskID      = "sd-task-id"
)

// Meta are the CloudEvents attributes of one event.
type Meta struct {
	ID      string
	Source  string
	Type    string
	Time    time.Time
	Subject string // the account id, when there is one
	// ContentType is the media type of the data (RFC 2046), written as
	// ce-datacontenttype in its compact form (see MediaType). A value that
	// is not a media type is left out: CloudEvents readers refuse an event
	// whose datacontenttype does not parse.
	ContentType string
}

// Header is one header of a message, its value not yet percent-encoded.
type Header struct {
	Key, Value string
}

// metaHeaders is the most headers Message derives from a Meta.
const metaHeaders = 8

// Message builds a NATS message carrying data with m as headers, then sets
// every header of extra as Set would. Header names are set verbatim (nats.go
// header names are case-sensitive).
func Message(subject string, m Meta, data []byte, extra ...Header) *nats.Msg {
	n := metaHeaders + len(extra)
	h := headerBuilder{h: make(nats.Header, n), vals: make([]string, 0, n)}
	h.set(HeaderSpecVersion, "1.0")
	h.set(HeaderID, Encode(m.ID))
	h.set(HeaderSource, Encode(m.Source))
	h.set(HeaderType, Encode(m.Type))
	h.set(HeaderTime, m.Time.UTC().Format(time.RFC3339Nano))
	if m.Subject != "" {
		h.set(HeaderSubject, Encode(m.Subject))
	}
	if ct := MediaType(m.ContentType); ct != "" {
		h.set(HeaderDataContentType, Encode(ct))
	}
	h.set(nats.MsgIdHdr, Encode(m.ID))
	for _, x := range extra {
		h.set(x.Key, Encode(x.Value))
	}
	return &nats.Msg{Subject: subject, Data: data, Header: h.h}
}

// headerBuilder sets single-valued headers whose value slices share one
// backing array, so that a message's headers cost two allocations.
type headerBuilder struct {
	h    nats.Header
	vals []string
}

// set sets k to the (already encoded) v. Each value slice is capped at its one
// element: appending to it later copies instead of overwriting a neighbour.
func (b *headerBuilder) set(k, v string) {
	i := len(b.vals)
	b.vals = append(b.vals, v)
	b.h[k] = b.vals[i : i+1 : i+1]
}

// maxMediaType bounds, in bytes, the media types MediaType accepts: the
// ones requests carry are a few dozen bytes.
const maxMediaType = 256

// MediaType returns ct in the form Message writes as ce-datacontenttype:
// lower-case type, subtype and parameter names, parameters sorted by name and
// joined by ";" without the optional whitespace (which would otherwise travel
// percent-encoded), values quoted only where RFC 2045 requires it. It returns
// "" when ct is empty, longer than 256 bytes, or not a media type.
func MediaType(ct string) string {
	if ct == "" || len(ct) > maxMediaType {
		return ""
	}
	if compactMediaType(ct) {
		return ct
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mt, "/") {
		return ""
	}
	var b strings.Builder
	b.WriteString(mime.FormatMediaType(mt, nil))
	if b.Len() == 0 {
		return ""
	}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		// FormatMediaType quotes (or RFC 2231-encodes) the value and
		// separates it with "; "; the separator is all that is dropped.
		p := mime.FormatMediaType("x/x", map[string]string{k: params[k]})
		if p == "" {
			return ""
		}
		b.WriteByte(';')
		b.WriteString(strings.TrimPrefix(p, "x/x; "))
	}
	return b.String()
}

// compactMediaType reports whether ct is a type/subtype of lower-case token
// characters without parameters, already in MediaType's form: the common
// case, answered without parsing.
func compactMediaType(ct string) bool {
	slash := strings.IndexByte(ct, '/')
	if slash <= 0 || slash == len(ct)-1 {
		return false
	}
	for i := 0; i < len(ct); i++ {
		c := ct[i]
		switch {
		case i == slash:
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$&-^_.+", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Set sets header k to the percent-encoded v, verbatim in case.
func Set(msg *nats.Msg, k, v string) {
	msg.Header[k] = []string{Encode(v)}
}

// Get returns the decoded value of header k ("" when absent or undecodable).
func Get(h nats.Header, k string) string {
	vs := h[k]
	if len(vs) == 0 {
		return ""
	}
	v, err := Decode(vs[0])
	if err != nil {
		return ""
	}
	return v
}

// Encode percent-encodes the bytes of s that may not travel verbatim in a
// header value: controls, space, '"', '%' and every non-ASCII byte, as the
// CloudEvents HTTP and NATS bindings require.
func Encode(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func needsEscape(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '"' || c == '%'
}

// Decode reverses Encode.
func Decode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("event: truncated escape in header value")
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("event: bad escape in header value")
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
