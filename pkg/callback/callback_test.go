package callback_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/sdevents/sdevents/pkg/callback"
)

// Vector is one case of testdata/fixtures/callbacks/vectors.json, the signing and
// token cases checked with the seed's own Python.
type Vector struct {
	Name    string            `json:"name"`
	AK      string            `json:"ak"`
	SK      string            `json:"sk"`
	Token   string            `json:"token"`
	Account string            `json:"account"`
	Query   map[string]string `json:"query"`
	Body    string            `json:"body"`
	Valid   bool              `json:"valid"`
	Keys    []struct {
		AK string `json:"ak"`
		SK string `json:"sk"`
	} `json:"keys"`
}

func loadVectors(t testing.TB) []Vector {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", "callbacks", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []Vector `json:"cases"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) == 0 {
		t.Fatal("no vectors")
	}
	return f.Cases
}

func queryOf(v Vector) string {
	q := url.Values{}
	for k, s := range v.Query {
		q.Set(k, s)
	}
	return q.Encode()
}

func TestVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
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
