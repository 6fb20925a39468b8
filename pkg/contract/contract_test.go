package contract_test

import (
	"testing"

	"github.com/sdevents/sdevents/pkg/contract"
)

// TestSourceOf: s3:// URIs are recorded as they are; other URLs lose their
// query, fragment and user info.
func TestSourceOf(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"s3://out/t1/a b?x#1.png":                         "s3://out/t1/a b?x#1.png",
		"https://img.example/a.png?Signature=s&Expires=1": "https://img.example/a.png",
		"https://user:pw@img.example/a.png#frag":          "https://img.example/a.png",
		"http://[::1":                                     "<bad url>",
	} {
		if got := contract.SourceOf(raw); got != want {
			t.Errorf("SourceOf(%q) = %q, want %q", raw, got, want)
		}
	}
}
