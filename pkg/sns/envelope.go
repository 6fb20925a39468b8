package sns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxEnvelopeSize bounds the body ParseEnvelope accepts. SNS messages are at
// most 256 KiB; the envelope adds JSON escaping and a few small fields. The
// HTTP layer should read at most MaxEnvelopeSize+1 bytes (http.MaxBytesReader)
// and answer 413 above it.
const MaxEnvelopeSize = 1 << 20

// Message types carried in the Type field (and in the x-amz-sns-message-type
// header).
const (
	TypeNotification             = "Notification"
	TypeSubscriptionConfirmation = "SubscriptionConfirmation"
	TypeUnsubscribeConfirmation  = "UnsubscribeConfirmation"
)

// Envelope is the JSON document SNS POSTs to an HTTP(S) endpoint. Field names
// and JSON keys are AWS's. A field absent from the body is "", except Subject,
// which is nil when absent: a present Subject is signed, an absent one is not,
// and a present empty Subject differs from an absent one.
type Envelope struct {
	Type             string  `json:"Type"`
	MessageId        string  `json:"MessageId"`
	Token            string  `json:"Token,omitempty"`
	TopicArn         string  `json:"TopicArn"`
	Subject          *string `json:"Subject,omitempty"`
	Message          string  `json:"Message"`
	SubscribeURL     string  `json:"SubscribeURL,omitempty"`
	UnsubscribeURL   string  `json:"UnsubscribeURL,omitempty"`
	Timestamp        string  `json:"Timestamp"`
	SignatureVersion string  `json:"SignatureVersion"`
	Signature        string  `json:"Signature"`
	SigningCertURL   string  `json:"SigningCertURL"`
}

// Time returns the parsed Timestamp (RFC 3339, as SNS sends it, e.g.
// "2022-07-28T21:23:58.317Z"). It fails with ErrMalformed.
func (e Envelope) Time() (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, e.Timestamp)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: Timestamp %q is not RFC 3339", ErrMalformed, e.Timestamp)
	}
	return t, nil
}

// envelopeField describes one known key of the envelope.
type envelopeField struct {
	// set stores a decoded string value into the envelope.
	set func(e *Envelope, v string)
}

var envelopeFields = map[string]envelopeField{
	"Type":             {func(e *Envelope, v string) { e.Type = v }},
	"MessageId":        {func(e *Envelope, v string) { e.MessageId = v }},
	"Token":            {func(e *Envelope, v string) { e.Token = v }},
	"TopicArn":         {func(e *Envelope, v string) { e.TopicArn = v }},
	"Subject":          {func(e *Envelope, v string) { e.Subject = &v }},
	"Message":          {func(e *Envelope, v string) { e.Message = v }},
	"SubscribeURL":     {func(e *Envelope, v string) { e.SubscribeURL = v }},
	"UnsubscribeURL":   {func(e *Envelope, v string) { e.UnsubscribeURL = v }},
	"Timestamp":        {func(e *Envelope, v string) { e.Timestamp = v }},
	"SignatureVersion": {func(e *Envelope, v string) { e.SignatureVersion = v }},
	"Signature":        {func(e *Envelope, v string) { e.Signature = v }},
	"SigningCertURL":   {func(e *Envelope, v string) { e.SigningCertURL = v }},
}

// foldedField returns the known key that key matches under Unicode case
// folding (as encoding/json matches struct fields, where "ſ" is an "s" and
// the Kelvin sign a "k"), or "".
func foldedField(key string) string {
	for k := range envelopeFields {
		if strings.EqualFold(k, key) {
			return k
		}
	}
	return ""
}

// ParseEnvelope parses an SNS envelope from body, whatever the request's
// Content-Type (SNS sends JSON as text/plain). It does not verify anything:
// call Verifier.Verify before trusting any field.
//
// The parse is strict so that every JSON decoder reading the stored body later
// sees the values that were verified: body must be valid UTF-8 holding one JSON
// object and nothing after it; known keys match case-sensitively, and a key
// repeated, or matching a known key only under case folding (which
// encoding/json would merge into it), is refused. Known keys must hold strings (null counts as
// absent); unknown keys are ignored. The required fields are those of
// Envelope.Validate.
//
// Errors: ErrTooLarge above MaxEnvelopeSize, ErrUnknownType for an unknown
// Type, ErrMalformed otherwise.
func ParseEnvelope(body []byte) (Envelope, error) {
	if len(body) > MaxEnvelopeSize {
		return Envelope{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(body), MaxEnvelopeSize)
	}
	if !utf8.Valid(body) {
		return Envelope{}, fmt.Errorf("%w: body is not valid UTF-8", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return Envelope{}, fmt.Errorf("%w: body is not a JSON object", ErrMalformed)
	}
	var env Envelope
	seen := make(map[string]bool, len(envelopeFields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		key, ok := tok.(string)
		if !ok {
			return Envelope{}, fmt.Errorf("%w: object key expected", ErrMalformed)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Envelope{}, fmt.Errorf("%w: value of %q: %v", ErrMalformed, key, err)
		}
		f, known := envelopeFields[key]
		if !known {
			if canon := foldedField(key); canon != "" {
				return Envelope{}, fmt.Errorf("%w: key %q is a case variant of %q", ErrMalformed, key, canon)
			}
			continue
		}
		if seen[key] {
			return Envelope{}, fmt.Errorf("%w: duplicate key %q", ErrMalformed, key)
		}
		seen[key] = true
		if string(raw) == "null" {
			continue
		}
		if len(raw) == 0 || raw[0] != '"' {
			return Envelope{}, fmt.Errorf("%w: %s is not a string", ErrMalformed, key)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Envelope{}, fmt.Errorf("%w: %s: %v", ErrMalformed, key, err)
		}
		f.set(&env, s)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Envelope{}, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	if err := env.Validate(); err != nil {
		return Envelope{}, err
	}
	return env, nil
}

// Validate checks that e has a known Type and the fields that type requires:
// Type, MessageId, TopicArn, Message, Timestamp (RFC 3339), SignatureVersion,
// Signature and SigningCertURL always; Token and SubscribeURL for
// SubscriptionConfirmation and UnsubscribeConfirmation. Required means
// non-empty (SNS refuses to publish an empty message). It does not check
// SignatureVersion's value or any URL (Verify does).
//
// Errors: ErrUnknownType, ErrMalformed (all missing fields are named).
func (e Envelope) Validate() error {
	switch e.Type {
	case "":
		return fmt.Errorf("%w: Type is missing", ErrMalformed)
	case TypeNotification, TypeSubscriptionConfirmation, TypeUnsubscribeConfirmation:
	default:
		return fmt.Errorf("%w: %q", ErrUnknownType, e.Type)
	}
	var missing []string
	need := func(name, v string) {
		if v == "" {
			missing = append(missing, name)
		}
	}
	need("MessageId", e.MessageId)
	need("TopicArn", e.TopicArn)
	need("Message", e.Message)
	need("Timestamp", e.Timestamp)
	need("SignatureVersion", e.SignatureVersion)
	need("Signature", e.Signature)
	need("SigningCertURL", e.SigningCertURL)
	if e.Type != TypeNotification {
		need("Token", e.Token)
		need("SubscribeURL", e.SubscribeURL)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s: missing %s", ErrMalformed, e.Type, strings.Join(missing, ", "))
	}
	if _, err := e.Time(); err != nil {
		return err
	}
	return nil
}

// RawDeliveryHeader is the header SNS sets on raw message deliveries.
const RawDeliveryHeader = "X-Amz-Sns-Rawdelivery"

// IsRawDelivery reports whether h marks a raw message delivery
// (x-amz-sns-rawdelivery: true, case-insensitive). Such a body is the bare
// message with no envelope and no signature: the HTTP layer refuses it with
// ErrRawDelivery.
func IsRawDelivery(h http.Header) bool {
	return strings.EqualFold(strings.TrimSpace(h.Get(RawDeliveryHeader)), "true")
}
