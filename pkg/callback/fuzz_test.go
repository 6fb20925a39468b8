package callback_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/callback/callbacktest"
)

// FuzzParseParams: any query either parses into values without control
// characters or fails with ErrMalformed / ErrUnsigned; it never panics.
func FuzzParseParams(f *testing.F) {
	f.Add("apiId=a&bizType=sdTaskFinished&invokeId=i&apiToken=AAAA&sign=x%2By&nonce=n&timestamp=1732000000000")
	f.Add("sign=a+b&nonce=%ZZ&timestamp=1")
	f.Add("sign=s&nonce=n&timestamp=-1&timestamp=2")
	f.Add(";;&&==%00")
	f.Add("bizType=" + strings.Repeat("b", callback.MaxBizTypeLen+1) + "&sign=s&nonce=n&timestamp=1")
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := callback.ParseParams(raw)
		if err != nil {
			if !errors.Is(err, callback.ErrMalformed) && !errors.Is(err, callback.ErrUnsigned) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		for _, v := range []string{p.APIID, p.BizType, p.InvokeID, p.APIToken, p.Sign, p.Nonce, p.Timestamp} {
			if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("control character accepted: %q", v)
			}
			if len(v) > callback.MaxParamLen {
				t.Fatalf("over-long value accepted")
			}
		}
		if len(p.BizType) > callback.MaxBizTypeLen {
			t.Fatalf("over-long bizType accepted")
		}
		if _, err := callback.ParseTimestamp(p.Timestamp); err != nil {
			t.Fatalf("accepted timestamp %q does not parse", p.Timestamp)
		}
	})
}

// FuzzDecryptToken: decryption never panics, returns UTF-8 only, and inverts
// EncryptToken.
func FuzzDecryptToken(f *testing.F) {
	f.Add("ABEiM0RVZneImaq7zN3u/7J5sT+frXNK3nYlS8Jp0vA=", "ExampleSecretKey-9f8e7d", "user-42")
	f.Add("AAAA", "k", "")
	f.Add("", "", "0123456789abcdef")
	f.Fuzz(func(t *testing.T, apiToken, sk, plain string) {
		if tok, err := callback.DecryptToken(apiToken, sk); err == nil {
			if !utf8.ValidString(tok) {
				t.Fatal("non-UTF-8 token accepted")
			}
		} else if !errors.Is(err, callback.ErrToken) {
			t.Fatalf("unexpected error class: %v", err)
		} else if plain != "" && strings.Contains(err.Error(), plain) && len(plain) > 3 {
			t.Fatal("error mentions plaintext")
		}
		if !utf8.ValidString(plain) {
			return
		}
		enc, err := callback.EncryptToken(plain, sk, bytes.NewReader(make([]byte, 16)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := callback.DecryptToken(enc, sk)
		if err != nil || got != plain {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	})
}

// FuzzVerifyMutation flips one byte of one signed field of a valid vector; the
// result must never verify.
func FuzzVerifyMutation(f *testing.F) {
	vectors := callbacktest.Vectors(f)
	var valid []callbacktest.Vector
	for _, v := range vectors {
		if v.Valid {
			valid = append(valid, v)
		}
	}
	for i := range valid {
		for field := range 9 {
			f.Add(uint8(i), uint8(field), uint16(0), byte('x'))
		}
	}
	f.Fuzz(func(t *testing.T, vi, field uint8, pos uint16, b byte) {
		v := valid[int(vi)%len(valid)]
		q := map[string]string{}
		for k, s := range v.Query {
			q[k] = s
		}
		body := v.Body
		ak := v.AK
		mutate := func(s string) string {
			if s == "" {
				return string([]byte{b})
			}
			bs := []byte(s)
			i := int(pos) % len(bs)
			if bs[i] == b {
				bs[i] ^= 0x01
			} else {
				bs[i] = b
			}
			return string(bs)
		}
		signsContext := strings.TrimSpace(v.Query["bizType"]) != ""
		switch field % 9 {
		case 0:
			body = mutate(body)
		case 1:
			ak = mutate(ak)
		case 2:
			q["nonce"] = mutate(q["nonce"])
		case 3:
			q["timestamp"] = mutate(q["timestamp"])
		case 4:
			q["sign"] = mutate(q["sign"])
		case 5, 6, 7, 8:
			if !signsContext {
				return // unsigned fields without a bizType
			}
			name := []string{"bizType", "apiId", "invokeId", "apiToken"}[field%9-5]
			q[name] = mutate(q[name])
		}
		vals := url.Values{}
		for k, s := range q {
			vals.Set(k, s)
		}
		p, err := callback.ParseParams(vals.Encode())
		if err != nil {
			return
		}
		if _, err := callback.Verify([]callback.Key{{AK: ak, SK: v.SK}}, p, []byte(body)); err == nil {
			t.Fatalf("mutated field %d of %s verified", field%9, v.Name)
		}
	})
}

// FuzzParseParamsReference: ParseParams, which scans the query itself, agrees
// with the url.ParseQuery-based reference on every input, error texts
// included.
func FuzzParseParamsReference(f *testing.F) {
	f.Add("apiId=a&bizType=sdTaskFinished&invokeId=i&apiToken=AAAA&sign=x%2By&nonce=n&timestamp=1732000000000")
	f.Add("sign=a+b&nonce=%ZZ&timestamp=1")
	f.Add("sign=s&nonce=n&timestamp=-1&timestamp=2")
	f.Add("%73ign=s&nonce=n&timestamp=1&sign=t")
	f.Add("sign=s;x&nonce=%zz&timestamp=1")
	f.Add(";;&&==%00")
	f.Add(strings.Repeat("a=b&", 40) + "sign=s&nonce=n&timestamp=1")
	f.Add("bizType=" + strings.Repeat("b", callback.MaxParamLen+1) + "&sign=s&nonce=n&timestamp=1")
	f.Fuzz(func(t *testing.T, raw string) {
		got, gotErr := callback.ParseParams(raw)
		want, wantErr := referenceParseParams(raw)
		if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("ParseParams(%q) = %+v, %v; reference %+v, %v", raw, got, gotErr, want, wantErr)
		}
	})
}

// referenceParseParams is ParseParams as first written, over url.ParseQuery.
func referenceParseParams(rawQuery string) (callback.Params, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return callback.Params{}, fmt.Errorf("%w: query: %v", callback.ErrMalformed, err)
	}
	var p callback.Params
	for _, pn := range []struct {
		name  string
		field *string
	}{
		{"apiId", &p.APIID}, {"bizType", &p.BizType}, {"invokeId", &p.InvokeID}, {"apiToken", &p.APIToken},
		{"sign", &p.Sign}, {"nonce", &p.Nonce}, {"timestamp", &p.Timestamp},
	} {
		vs := q[pn.name]
		switch {
		case len(vs) == 0:
			continue
		case len(vs) > 1:
			return callback.Params{}, fmt.Errorf("%w: %s given %d times", callback.ErrMalformed, pn.name, len(vs))
		}
		v := vs[0]
		limit := callback.MaxParamLen
		if pn.name == "bizType" {
			limit = callback.MaxBizTypeLen
		}
		if len(v) > limit {
			return callback.Params{}, fmt.Errorf("%w: %s longer than %d bytes", callback.ErrMalformed, pn.name, limit)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return callback.Params{}, fmt.Errorf("%w: %s holds a control character", callback.ErrMalformed, pn.name)
		}
		*pn.field = v
	}
	if p.Sign == "" || p.Nonce == "" || p.Timestamp == "" {
		return p, callback.ErrUnsigned
	}
	if _, err := callback.ParseTimestamp(p.Timestamp); err != nil {
		return callback.Params{}, err
	}
	return p, nil
}

// FuzzSignShaped: every string that decodes to 32 bytes is shaped like a sign
// (refusing it before the body is read loses no genuine request), and every
// sign Sign produces is too. The decoder skips CR and LF, which ParseParams
// never lets through (control characters).
func FuzzSignShaped(f *testing.F) {
	f.Add("ZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWVmZGVhZGJlZWY=", []byte("body"))
	f.Add("c2lnbg==", []byte(""))
	f.Add("ZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWVmZGVhZGJlZWZ=", []byte("x"))
	f.Add("00000000000000000000000\r00000000000000000000=", []byte("0"))
	f.Fuzz(func(t *testing.T, s string, body []byte) {
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err == nil && !strings.ContainsAny(s, "\r\n") && len(b) == 32 && !callback.SignShaped(s) {
			t.Fatalf("SignShaped(%q) = false for a 32-byte sign", s)
		}
		sign := callback.Sign(callback.Key{AK: "ak", SK: s}, callback.Params{Nonce: s, Timestamp: "1"}, body, "")
		if !callback.SignShaped(sign) {
			t.Fatalf("SignShaped(%q) = false for Sign's output", sign)
		}
	})
}
