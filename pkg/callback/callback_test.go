package callback_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/callback/callbacktest"
)

func queryOf(v callbacktest.Vector) string {
	q := url.Values{}
	for k, s := range v.Query {
		q.Set(k, s)
	}
	return q.Encode()
}

func TestVectors(t *testing.T) {
	t.Parallel()
	for _, v := range callbacktest.Vectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			keys := []callback.Key{{AK: v.AK, SK: v.SK}}
			p, err := callback.ParseParams(queryOf(v))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			got, err := callback.Verify(keys, p, []byte(v.Body))
			if v.Valid != (err == nil) {
				t.Fatalf("valid = %v, want %v (err %v)", err == nil, v.Valid, err)
			}
			if !v.Valid {
				if !errors.Is(err, callback.ErrSignature) && !errors.Is(err, callback.ErrToken) {
					t.Fatalf("err = %v, want ErrSignature or ErrToken", err)
				}
				return
			}
			if got.Token != v.Token {
				t.Fatalf("token mismatch")
			}
			if id := got.Account(); id != v.Account {
				t.Fatalf("account = %s, want %s", id, v.Account)
			}
			if s := callback.Sign(keys[got.KeyIndex], p, []byte(v.Body), got.Token); s != v.Query["sign"] {
				t.Fatalf("Sign = %s, want %s", s, v.Query["sign"])
			}
		})
	}
}

// TestVerifierConcurrent: one Verifier, shared by goroutines, answers every
// vector as Verify does.
func TestVerifierConcurrent(t *testing.T) {
	t.Parallel()
	vectors := callbacktest.Vectors(t)
	type result struct {
		v   callback.Verified
		err error
	}
	var keys []callback.Key
	for _, v := range vectors {
		keys = append(keys, callback.Key{AK: v.AK, SK: v.SK})
	}
	verifier := callback.NewVerifier(keys)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, v := range vectors {
				p, err := callback.ParseParams(queryOf(v))
				if err != nil {
					t.Errorf("%s: parse: %v", v.Name, err)
					return
				}
				want, wantErr := callback.Verify(keys, p, []byte(v.Body))
				got, gotErr := verifier.Verify(p, []byte(v.Body))
				if (result{got, gotErr}) != (result{want, wantErr}) {
					t.Errorf("%s: Verifier.Verify = %+v, %v; Verify = %+v, %v", v.Name, got, gotErr, want, wantErr)
				}
			}
		})
	}
	wg.Wait()
}

// TestKeyHidesItsSecret: a key printed with any verb, alone or inside a
// configuration, shows its access key and never its secret.
func TestKeyHidesItsSecret(t *testing.T) {
	k := callback.Key{AK: "ak-visible", SK: "sk-must-not-show"}
	cfg := struct{ Keys []callback.Key }{[]callback.Key{k}}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{k, &k, cfg} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, "sk-must-not-show") {
				t.Errorf("%s of %T shows the secret: %s", verb, v, out)
			}
			if !strings.Contains(out, "ak-visible") {
				t.Errorf("%s of %T hides the access key: %s", verb, v, out)
			}
		}
	}
}
