package sns

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// TestAmazonIntermediatesChainToSystemRoot: every shipped intermediate is a
// CA signed by a root of the system pool (Amazon Root CA 1), so that shipping
// it adds a path, never trust.
func TestAmazonIntermediatesChainToSystemRoot(t *testing.T) {
	t.Parallel()
	roots, err := x509.SystemCertPool()
	if err != nil {
		t.Fatalf("system roots: %v", err)
	}
	rest := amazonIntermediatesPEM
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if !cert.IsCA || !cert.BasicConstraintsValid {
			t.Errorf("%s is not a CA", cert.Subject)
		}
		chains, err := cert.Verify(x509.VerifyOptions{
			Roots: roots, CurrentTime: cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			t.Errorf("%s: %v (is Amazon Root CA 1 in the system pool?)", cert.Subject, err)
			continue
		}
		if root := chains[0][len(chains[0])-1]; root.Subject.CommonName != "Amazon Root CA 1" {
			t.Errorf("%s chains to %s, want Amazon Root CA 1", cert.Subject, root.Subject)
		}
	}
	if n != 5 {
		t.Fatalf("%d intermediates, want 5", n)
	}
}
