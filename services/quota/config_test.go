package quota_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/quotatest"
)

// TestConfigValidate: the zero Config is the defaults; every unusable
// value is refused with ErrInvalidConfig.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		cfg     quota.Config
		wantErr bool
	}{
		{"zero", quota.Config{}, false},
		{"the test deployment's", quotatest.Config(), false},
		{"negative ttl", quota.Config{ReservationTTL: -time.Second}, true},
		{"negative drain", quota.Config{DrainTimeout: -time.Second}, true},
		{"negative price", quota.Config{PerImage: -1}, true},
		{"retention under the minimum", quota.Config{DecidedRetention: time.Minute}, true},
		{"retention under 3 × the request age", quota.Config{DecidedRetention: 20 * time.Minute, RequestMaxAge: 10 * time.Minute}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.wantErr != (err != nil) || err != nil && !errors.Is(err, quota.ErrInvalidConfig) {
				t.Fatalf("Validate: %v, want an error: %v", err, tc.wantErr)
			}
		})
	}
}
