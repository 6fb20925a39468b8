package sns

import (
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"sync"
	"time"
)

// amazonIntermediatesPEM holds the Amazon intermediate CAs that issue SNS
// signing certificates (see the file's header). SNS serves the leaf alone, and
// the verifier fetches nothing but SigningCertURL (no AIA "CA Issuers"
// download), so the intermediates ship with the binary.
//
//go:embed amazon-intermediates.pem
var amazonIntermediatesPEM []byte

// amazonIntermediates returns a pool of amazonIntermediatesPEM.
// Intermediates are not trusted by themselves: a chain through them must
// still end at a root.
func amazonIntermediates() (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(amazonIntermediatesPEM) {
		return nil, errors.New("sns: amazon-intermediates.pem holds no certificate")
	}
	return p, nil
}

// signingCert is a fetched signing certificate, with the period in which the
// last chain found for it is valid.
type signingCert struct {
	cert *x509.Certificate

	mu       sync.Mutex
	from, to time.Time // zero until a chain is found
}

// chainedAt checks that c.cert chains, through intermediates or roots, to one
// of roots, with every certificate of the chain valid at t (the message's
// Timestamp). Extended key usages are not required: the certificate signs
// messages, not TLS handshakes. A chain found is remembered with the period
// in which all its certificates are valid, so that later messages signed
// within it cost no second verification. It fails with ErrCertificate.
func (c *signingCert) chainedAt(t time.Time, roots, intermediates *x509.CertPool) error {
	c.mu.Lock()
	known := !c.from.IsZero() && !t.Before(c.from) && !t.After(c.to)
	c.mu.Unlock()
	if known {
		return nil
	}
	chains, err := c.cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   t,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: issued by %q, no chain to a trusted root at %s: %v",
			ErrCertificate, c.cert.Issuer.String(), t.UTC().Format(time.RFC3339), err)
	}
	from, to := chains[0][0].NotBefore, chains[0][0].NotAfter
	for _, cert := range chains[0][1:] {
		if cert.NotBefore.After(from) {
			from = cert.NotBefore
		}
		if cert.NotAfter.Before(to) {
			to = cert.NotAfter
		}
	}
	c.mu.Lock()
	c.from, c.to = from, to
	c.mu.Unlock()
	return nil
}
