package simulator_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/url"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/callback/callbacktest"
	"github.com/sdevents/sdevents/services/simulator"
)

// fixedReader replays the vector's IV, then the nonce bytes.
func fixedReader(b ...[]byte) io.Reader { return bytes.NewReader(bytes.Join(b, nil)) }

// TestSignerReproducesVectors: the signing primitives the simulator's signer
// uses (pkg/callback's Sign and EncryptToken) reproduce every valid vector's
// sign and apiToken byte for byte, given the vector's IV, and its token
// decrypts back; invalid vectors are not reproduced. Then the signer itself,
// with its randomness and clock fixed, makes a request for each vector whose
// nonce, timestamp and apiToken are exactly what those inputs give, and which
// the receiver's check verifies after the trip through the query string.
func TestSignerReproducesVectors(t *testing.T) {
	t.Parallel()
	valid := 0
	for _, v := range callbacktest.Vectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			key := callback.Key{AK: v.AK, SK: v.SK}
			q := v.Query
			p := callback.Params{APIID: q["apiId"], BizType: q["bizType"], InvokeID: q["invokeId"],
				Nonce: q["nonce"], Timestamp: q["timestamp"], APIToken: q["apiToken"]}
			// The signature over the vector's own parameters.
			sign := callback.Sign(key, p, []byte(v.Body), v.Token)
			if !v.Valid {
				if sign == q["sign"] {
					if tok, err := callback.DecryptToken(q["apiToken"], v.SK); err == nil && tok == v.Token {
						t.Fatalf("an invalid vector (%s) was reproduced", v.Name)
					}
				}
				return
			}
			if sign != q["sign"] {
				t.Fatalf("sign = %s, want %s", sign, q["sign"])
			}
			// The encrypted token, with the vector's IV.
			if v.Token != "" {
				raw, err := base64.StdEncoding.DecodeString(q["apiToken"])
				if err != nil {
					t.Fatal(err)
				}
				enc, err := callback.EncryptToken(v.Token, v.SK, fixedReader(raw[:16]))
				if err != nil {
					t.Fatal(err)
				}
				if enc != q["apiToken"] {
					t.Fatalf("apiToken = %s, want %s", enc, q["apiToken"])
				}
				tok, err := callback.DecryptToken(q["apiToken"], v.SK)
				if err != nil || tok != v.Token {
					t.Fatalf("decrypt = %q, %v", tok, err)
				}
				if got := account.FromToken(tok); got != v.Account {
					t.Fatalf("account = %s, want %s", got, v.Account)
				}
			}
			// A fresh request of the simulator for the same callback, its
			// nonce bytes, IV and clock fixed.
			nonce, iv := bytes.Repeat([]byte{0xa5}, 12), bytes.Repeat([]byte{0x3c}, 16)
			at := time.UnixMilli(1764720000123)
			s := simulator.CallbackSigner{Key: key, Rand: fixedReader(nonce, iv), Now: func() time.Time { return at }}
			fresh, err := s.Sign(p.APIID, p.BizType, p.InvokeID, v.Token, []byte(v.Body))
			if err != nil {
				t.Fatal(err)
			}
			if fresh.Nonce != hex.EncodeToString(nonce) || fresh.Timestamp != "1764720000123" {
				t.Fatalf("nonce %q, timestamp %q", fresh.Nonce, fresh.Timestamp)
			}
			if v.Token != "" {
				want, err := callback.EncryptToken(v.Token, v.SK, fixedReader(iv))
				if err != nil || fresh.APIToken != want {
					t.Fatalf("apiToken %q, want %q (%v)", fresh.APIToken, want, err)
				}
			}
			parsed, err := callback.ParseParams(simulator.Query(fresh))
			if err != nil {
				t.Fatal(err)
			}
			if parsed != fresh {
				t.Fatalf("query round trip: %+v != %+v", parsed, fresh)
			}
			got, err := callback.Verify([]callback.Key{{AK: "other", SK: "other-sk"}, key}, parsed, []byte(v.Body))
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if got.Token != v.Token || got.KeyIndex != 1 {
				t.Fatalf("verified token/key index %d differ", got.KeyIndex)
			}
		})
		if v.Valid {
			valid++
		}
	}
	if valid < 5 {
		t.Fatalf("only %d valid vectors", valid)
	}
}

// TestSignerQueryEscapesPlus checks that the base64 '+' and '/' of sign and
// apiToken survive the query string (the receiver form-decodes it).
func TestSignerQueryEscapesPlus(t *testing.T) {
	t.Parallel()
	key := callback.Key{AK: "AK", SK: "SK"}
	for i := range 200 {
		p, err := simulator.CallbackSigner{Key: key}.Sign("api", callback.BizTaskFinished, "i", "user-"+string(rune('a'+i%26)), []byte("{}"))
		if err != nil {
			t.Fatal(err)
		}
		q, err := url.ParseQuery(simulator.Query(p))
		if err != nil {
			t.Fatal(err)
		}
		if q.Get("sign") != p.Sign || q.Get("apiToken") != p.APIToken {
			t.Fatalf("query does not carry sign/apiToken verbatim")
		}
	}
}
