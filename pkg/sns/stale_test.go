package sns_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/sns"
)

// TestFixturesGoStale moves the verifier's clock around each real AWS-signed
// fixture's Timestamp: accepted up to MaxAge after it and MaxClockSkew before
// it, refused with ErrStale beyond either bound, and refused before any
// certificate is fetched.
func TestFixturesGoStale(t *testing.T) {
	t.Parallel()
	fs := loadFixtures(t)
	s := newCertServer(t)
	for _, f := range fs {
		u, _ := url.Parse(f.env.SigningCertURL)
		s.serve(u.Path, f.certPEM)
	}
	const maxAge = 90 * time.Minute
	tests := []struct {
		name    string
		clock   time.Duration // the verifier's clock minus the Timestamp
		wantErr error
	}{
		{"just signed", 0, nil},
		{"at the maximum age", maxAge, nil},
		{"past the maximum age", maxAge + time.Millisecond, sns.ErrStale},
		{"past the de-duplication horizon", 7*time.Hour + 11*time.Minute, sns.ErrStale},
		{"years later", 3 * 365 * 24 * time.Hour, sns.ErrStale},
		{"from the near future", -sns.MaxClockSkew, nil},
		{"from the far future", -sns.MaxClockSkew - time.Millisecond, sns.ErrStale},
	}
	for _, f := range fs {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				cfg := s.config(f.env.TopicArn)
				cfg.MaxAge = maxAge
				cfg.Now = func() time.Time { return f.at(t).Add(tt.clock) }
				v, err := sns.NewVerifier(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if err := v.Verify(context.Background(), f.env); !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
					t.Fatalf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
				}
			}
		})
	}
	t.Cleanup(func() {
		// Every fresh case fetched once per fixture (a new verifier each);
		// the stale ones fetched nothing.
		if got, want := s.hits.Load(), int64(3*len(fs)); got != want {
			t.Errorf("%d certificate fetches, want %d", got, want)
		}
	})
}

// TestDefaultMaxAge: a zero MaxAge is DefaultMaxAge, a negative one is
// invalid.
func TestDefaultMaxAge(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	s.serve(testCertPath, makeCert(t, certSpec{}))
	for _, tt := range []struct {
		clock   time.Duration
		wantErr error
	}{
		{sns.DefaultMaxAge, nil},
		{sns.DefaultMaxAge + time.Second, sns.ErrStale},
	} {
		v := s.verifierAt(t, msgTime.Add(tt.clock), testTopic)
		if err := v.Verify(context.Background(), note(t, awsCertURL)); !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Fatalf("clock +%s: err = %v, want %v", tt.clock, err, tt.wantErr)
		}
	}
	if err := (sns.Config{TopicARNs: []string{testTopic}, MaxAge: -time.Second}).Validate(); err == nil {
		t.Fatal("negative MaxAge accepted")
	}
}
