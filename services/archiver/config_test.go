package archiver_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/fetch"
	"github.com/sdevents/sdevents/services/archiver"
)

// TestConfigValidate: the zero Config is the defaults; every unusable
// value is refused with ErrInvalidConfig.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		cfg     archiver.Config
		wantErr bool
	}{
		{"zero", archiver.Config{}, false},
		{"no minimum rate", archiver.Config{Limits: fetch.Limits{MinRate: -1}}, false},
		{"negative lifetime", archiver.Config{URLLifetime: -time.Second}, true},
		{"negative fetch timeout", archiver.Config{Limits: fetch.Limits{Timeout: -time.Second}}, true},
		{"negative drain", archiver.Config{DrainTimeout: -time.Second}, true},
		{"negative workers", archiver.Config{Workers: -1}, true},
		{"too many images per task", archiver.Config{MaxImagesPerTask: archiver.MaxImagesPerTaskLimit + 1}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.wantErr != (err != nil) || err != nil && !errors.Is(err, archiver.ErrInvalidConfig) {
				t.Fatalf("Validate: %v, want an error: %v", err, tc.wantErr)
			}
		})
	}
}
