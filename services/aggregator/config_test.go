package aggregator_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// TestConfigValidate: the zero Config is the defaults; an unusable grouping
// policy or a negative duration is refused with jobs.ErrInvalidConfig.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     aggregator.Config
		wantErr bool
	}{
		{"zero", aggregator.Config{}, false},
		{"an unknown key", aggregator.Config{Jobs: jobs.Config{Key: "user"}}, true},
		{"negative lookback", aggregator.Config{CreditLookback: -time.Second}, true},
		{"negative drain", aggregator.Config{DrainTimeout: -time.Second}, true},
	} {
		if err := tc.cfg.Validate(); tc.wantErr != (err != nil) || err != nil && !errors.Is(err, jobs.ErrInvalidConfig) {
			t.Errorf("%s: Validate: %v, want an error: %v", tc.name, err, tc.wantErr)
		}
	}
}
