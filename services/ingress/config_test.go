package ingress_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/services/ingress"
)

// TestConfigValidate: the zero Config is the defaults; every unusable
// value is refused with ErrInvalidConfig, whichever the others.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	src := ingress.CallbackSource{Name: "default", Keys: []callback.Key{testKey}}
	cases := []struct {
		name    string
		cfg     ingress.Config
		wantErr bool
	}{
		{"zero", ingress.Config{}, false},
		{"a source", ingress.Config{Callbacks: []ingress.CallbackSource{src}}, false},
		{"negative deadline", ingress.Config{SyncDeadline: -time.Second}, true},
		{"negative drain", ingress.Config{DrainTimeout: -time.Second}, true},
		{"negative body", ingress.Config{MaxBody: -1}, true},
		{"SNS messages older than remembered", ingress.Config{DedupHorizon: time.Hour, SNSMaxAge: time.Hour}, true},
		{"a source twice", ingress.Config{Callbacks: []ingress.CallbackSource{src, src}}, true},
		{"a source without a name", ingress.Config{Callbacks: []ingress.CallbackSource{{Keys: src.Keys}}}, true},
		{"a source without keys", ingress.Config{Callbacks: []ingress.CallbackSource{{Name: "default"}}}, true},
		{"a key without its secret", ingress.Config{Callbacks: []ingress.CallbackSource{{Name: "default", Keys: []callback.Key{{AK: "AK"}}}}}, true},
		{"an SNS source without topics", ingress.Config{SNS: []ingress.SNSSource{{Name: "eks"}}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.wantErr != (err != nil) || err != nil && !errors.Is(err, ingress.ErrInvalidConfig) {
				t.Fatalf("Validate: %v, want an error: %v", err, tc.wantErr)
			}
		})
	}
}
