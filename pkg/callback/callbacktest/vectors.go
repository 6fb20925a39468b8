// Package callbacktest gives tests the callback conformance vectors:
// testdata/fixtures/callbacks/vectors.json, signing and token cases checked
// with the platform's own reference code. Only tests import it.
package callbacktest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Vector is one case of vectors.json.
type Vector struct {
	Name    string            `json:"name"`
	AK      string            `json:"ak"`
	SK      string            `json:"sk"`
	Token   string            `json:"token"`
	Account string            `json:"account"`
	Query   map[string]string `json:"query"`
	Body    string            `json:"body"`
	Valid   bool              `json:"valid"`
	// Keys, when present, are the key pairs the receiver holds for the
	// case (key rotation); otherwise it holds AK/SK.
	Keys []struct {
		AK string `json:"ak"`
		SK string `json:"sk"`
	} `json:"keys"`
}

// Path is the vectors file, found from the test's working directory upward
// (every module of the repository sits below its root).
func Path(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "testdata", "fixtures", "callbacks", "vectors.json")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testdata/fixtures/callbacks/vectors.json not found above the working directory")
		}
		dir = parent
	}
}

// Vectors reads every case; it fails the test when there are none.
func Vectors(t testing.TB) []Vector {
	t.Helper()
	raw, err := os.ReadFile(Path(t))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []Vector `json:"cases"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("vectors.json: %v", err)
	}
	if len(f.Cases) == 0 {
		t.Fatal("vectors.json holds no cases")
	}
	return f.Cases
}
