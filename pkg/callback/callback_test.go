package callback_test

import (
	"errors"
	"net/url"
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
