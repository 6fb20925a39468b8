package callback

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrMalformed is returned (wrapped) for a query that cannot be read: bad
// escapes, a repeated parameter, control characters, a value over its bound,
// or a timestamp that is not a number. Callers answer 400.
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

// paramNames maps each query name to its field and its bound.
var paramNames = [...]struct {
	name  string
	field func(*Params) *string
	max   int
}{
	{"apiId", func(p *Params) *string { return &p.APIID }, MaxParamLen},
	{"bizType", func(p *Params) *string { return &p.BizType }, MaxBizTypeLen},
	{"invokeId", func(p *Params) *string { return &p.InvokeID }, MaxParamLen},
	{"apiToken", func(p *Params) *string { return &p.APIToken }, MaxParamLen},
	{"sign", func(p *Params) *string { return &p.Sign }, MaxParamLen},
	{"nonce", func(p *Params) *string { return &p.Nonce }, MaxParamLen},
	{"timestamp", func(p *Params) *string { return &p.Timestamp }, MaxParamLen},
}

// MaxParamLen bounds every query value; bizType has a tighter bound,
// MaxBizTypeLen.
const MaxParamLen = 4096

// ParseParams reads the callback parameters from a raw query string. Unknown
// parameters are ignored; a repeated known one is malformed, since the platform
// never sends two and a verifier must not guess which one was signed.
//
// Values are form-decoded: a base64 '+' must arrive escaped (%2B), as any form
// decoder, the seed's included, reads a bare '+' as a space.
func ParseParams(rawQuery string) (Params, error) {
	var q queryValues
	if !q.scan(rawQuery) {
		if err := q.parse(rawQuery); err != nil {
			return Params{}, fmt.Errorf("%w: query: %v", ErrMalformed, err)
		}
	}
	var p Params
	for i, pn := range paramNames {
		v, n := q[i].value, q[i].count
		switch {
		case n == 0:
			continue
		case n > 1:
			return Params{}, fmt.Errorf("%w: %s given %d times", ErrMalformed, pn.name, n)
		}
		if len(v) > pn.max {
			return Params{}, fmt.Errorf("%w: %s longer than %d bytes", ErrMalformed, pn.name, pn.max)
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

// queryValues holds, by paramNames index, the first decoded value of each
// known parameter and how many times it was given.
type queryValues [len(paramNames)]struct {
	value string
	count int
}

// maxScanParams bounds the queries scan reads itself; longer ones go to
// url.ParseQuery, which enforces the process's parameter limit
// (GODEBUG urlmaxqueryparams).
const maxScanParams = 32

// scan reads rawQuery as url.ParseQuery would, without building a map. It
// returns false, leaving q partly filled, for anything url.ParseQuery would
// reject (a ';', a bad escape) or for too many parameters: parse then
// decides, and words the error.
func (q *queryValues) scan(rawQuery string) bool {
	if strings.Count(rawQuery, "&") >= maxScanParams {
		return false
	}
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		if strings.Contains(kv, ";") {
			return false
		}
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, kOK := queryUnescape(k)
		v, vOK := queryUnescape(v)
		if !kOK || !vOK {
			return false
		}
		q.add(k, v)
	}
	return true
}

// parse reads rawQuery with url.ParseQuery.
func (q *queryValues) parse(rawQuery string) error {
	vs, err := url.ParseQuery(rawQuery)
	if err != nil {
		return err
	}
	*q = queryValues{}
	for i, pn := range paramNames {
		if v := vs[pn.name]; len(v) > 0 {
			q[i].value, q[i].count = v[0], len(v)
		}
	}
	return nil
}

// add records one decoded parameter; unknown names are ignored.
func (q *queryValues) add(name, value string) {
	for i, pn := range paramNames {
		if pn.name == name {
			if q[i].count == 0 {
				q[i].value = value
			}
			q[i].count++
			return
		}
	}
}

// queryUnescape is url.QueryUnescape, without its copy when there is nothing
// to decode; false means a bad escape.
func queryUnescape(s string) (string, bool) {
	if !strings.ContainsAny(s, "%+") {
		return s, true
	}
	v, err := url.QueryUnescape(s)
	return v, err == nil
}

// isControl matches ASCII control characters and DEL, which cannot travel in a
// NATS header.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
