package callback

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrMalformed is returned (wrapped) for a query that cannot be read: bad
// escapes, a repeated parameter, control characters, or a timestamp that is not
// a number. Callers answer 400.
var ErrMalformed = errors.New("malformed callback request")

// ErrUnsigned is returned when sign, nonce or timestamp is missing: the request
// cannot be verified. Callers answer 401.
var ErrUnsigned = errors.New("missing signature parameters")

// Params are the request-context query parameters of a callback, URL-decoded.
type Params struct {
	APIID     string
	BizType   string
	InvokeID  string
	APIToken  string // still encrypted
	Sign      string
	Nonce     string
	Timestamp string
}

// paramNames maps each query name to its field.
var paramNames = []struct {
	name  string
	field func(*Params) *string
}{
	{"apiId", func(p *Params) *string { return &p.APIID }},
	{"bizType", func(p *Params) *string { return &p.BizType }},
	{"invokeId", func(p *Params) *string { return &p.InvokeID }},
	{"apiToken", func(p *Params) *string { return &p.APIToken }},
	{"sign", func(p *Params) *string { return &p.Sign }},
	{"nonce", func(p *Params) *string { return &p.Nonce }},
	{"timestamp", func(p *Params) *string { return &p.Timestamp }},
}

// MaxParamLen bounds every query value.
const MaxParamLen = 4096

// ParseParams reads the callback parameters from a raw query string. Unknown
// parameters are ignored; a repeated known one is malformed, since the platform
// never sends two and a verifier must not guess which one was signed.
//
// Values are form-decoded: a base64 '+' must arrive escaped (%2B), as any form
// decoder, the seed's included, reads a bare '+' as a space.
func ParseParams(rawQuery string) (Params, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Params{}, fmt.Errorf("%w: query: %v", ErrMalformed, err)
	}
	var p Params
	for _, pn := range paramNames {
		vs := q[pn.name]
		switch {
		case len(vs) == 0:
			continue
		case len(vs) > 1:
			return Params{}, fmt.Errorf("%w: %s given %d times", ErrMalformed, pn.name, len(vs))
		}
		v := vs[0]
		if len(v) > MaxParamLen {
			return Params{}, fmt.Errorf("%w: %s longer than %d bytes", ErrMalformed, pn.name, MaxParamLen)
		}
		if i := strings.IndexFunc(v, isControl); i >= 0 {
			return Params{}, fmt.Errorf("%w: %s holds a control character", ErrMalformed, pn.name)
		}
		*pn.field(&p) = v
	}
	if p.Sign == "" || p.Nonce == "" || p.Timestamp == "" {
		return p, ErrUnsigned
	}
	if _, err := ParseTimestamp(p.Timestamp); err != nil {
		return Params{}, err
	}
	return p, nil
}

// isControl matches ASCII control characters and DEL, which cannot travel in a
// NATS header.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
