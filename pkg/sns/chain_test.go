package sns_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/sns"
)

// TestSigningCertMustChain serves signing certificates named
// sns.amazonaws.com from the trusted hosts (the topic's AWS host through the
// test dialer, and the extra host): only one issued by a trusted CA verifies.
// The HTTPS fetch from a trusted host is not enough.
func TestSigningCertMustChain(t *testing.T) {
	t.Parallel()
	untrusted := newTestCA(t, "untrusted CA")
	tests := []struct {
		name    string
		spec    certSpec
		wantErr error
	}{
		{"issued by a trusted CA", certSpec{}, nil},
		{"self-signed", certSpec{selfSigned: true}, sns.ErrCertificate},
		{"issued by an untrusted CA", certSpec{issuer: &untrusted}, sns.ErrCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newCertServer(t)
			s.serve(testCertPath, makeCert(t, tt.spec))
			v := s.verifier(t, testTopic)
			for _, certURL := range []string{awsCertURL, s.url(testCertPath)} {
				err := v.Verify(context.Background(), note(t, certURL))
				if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
					t.Fatalf("%s: err = %v, want %v", certURL, err, tt.wantErr)
				}
			}
		})
	}
}

// TestSigningCertChainAtMessageTime: the chain is judged at each message's
// Timestamp, not once per fetched certificate. The issuing CA is trusted but
// expires while the signing certificate is still valid: a message signed
// before that verifies, one signed after does not, with the same cached
// certificate.
func TestSigningCertChainAtMessageTime(t *testing.T) {
	t.Parallel()
	caEnd := msgTime.Add(30 * 24 * time.Hour)
	ca := newTestCAUntil(t, "short-lived CA", caEnd)
	s := newCertServer(t)
	s.serve(testCertPath, makeCert(t, certSpec{issuer: &ca}))
	clock := &fakeClock{now: msgTime}
	cfg := s.config(testTopic)
	cfg.ExtraCAPEM = append(cfg.ExtraCAPEM, ca.pem...)
	cfg.Now = clock.Now
	cfg.CacheTTL = 365 * 24 * time.Hour // one fetch for every message below
	v, err := sns.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	at := func(ts time.Time) sns.Envelope {
		e := note(t, awsCertURL)
		e.Timestamp = ts.Format("2006-01-02T15:04:05.000Z")
		if err := sns.Sign(&e, signingKey(t), sns.SignatureV2); err != nil {
			t.Fatal(err)
		}
		clock.Set(ts)
		return e
	}
	for _, tt := range []struct {
		name    string
		ts      time.Time
		wantErr error
	}{
		{"signed while the CA is valid", msgTime, nil},
		{"signed on the CA's last day", caEnd.Add(-time.Hour), nil},
		{"signed after the CA expired", caEnd.Add(time.Hour), sns.ErrCertificate},
		{"signed while the CA is valid, again", msgTime.Add(time.Hour), nil},
	} {
		err := v.Verify(context.Background(), at(tt.ts))
		if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Fatalf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	if n := s.hits.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1 (cached)", n)
	}
}

// BenchmarkVerifyCached is the cost of one Verify once the certificate is
// cached and its chain known: the signature check, and no chain verification
// for messages signed within the chain's validity.
func BenchmarkVerifyCached(b *testing.B) {
	s := newCertServer(b)
	s.serve(testCertPath, makeCert(b, certSpec{}))
	v := s.verifier(b, testTopic)
	e := note(b, awsCertURL)
	if err := v.Verify(context.Background(), e); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := v.Verify(context.Background(), e); err != nil {
			b.Fatal(err)
		}
	}
}
