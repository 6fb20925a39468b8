// Package event maps sdevents events to NATS messages: the CloudEvents
// attributes as headers in the binary content mode of the CloudEvents NATS
// binding (lower-case ce-* names, percent-encoded values), Content-Type, and
// Nats-Msg-Id equal to ce-id for JetStream de-duplication.
package event

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// CloudEvents header names (binary content mode).
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderSource      = "ce-source"
	HeaderType        = "ce-type"
	HeaderTime        = "ce-time"
	HeaderSubject     = "ce-subject"
	HeaderContentType = "Content-Type"
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
	ID          string
	Source      string
	Type        string
	Time        time.Time
	Subject     string // the account id, when there is one
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
	if m.ContentType != "" {
		h.set(HeaderContentType, m.ContentType)
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
