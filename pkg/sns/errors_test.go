package sns_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/sdevents/sdevents/pkg/sns"
)

// TestSentinel: Sentinel finds the sentinel under any wrapping, and nothing
// in an error of another kind.
func TestSentinel(t *testing.T) {
	t.Parallel()
	for _, s := range []error{
		sns.ErrTooLarge, sns.ErrMalformed, sns.ErrUnknownType, sns.ErrUnknownTopic, sns.ErrUnsupportedVersion,
		sns.ErrUntrustedURL, sns.ErrCertFetch, sns.ErrCertificate, sns.ErrStale, sns.ErrSignature, sns.ErrConfirm,
		sns.ErrRawDelivery,
	} {
		err := fmt.Errorf("SigningCertURL: %w", fmt.Errorf("%w: sns.us-east-1.amazonaws.com: dial tcp: lookup on 10.0.0.2:53: no such host", s))
		if got := sns.Sentinel(err); got != s {
			t.Errorf("Sentinel(%v) = %v, want %v", err, got, s)
		}
		if got := sns.Sentinel(errors.Join(io.EOF, err)); got != s {
			t.Errorf("Sentinel of a joined error = %v, want %v", got, s)
		}
	}
	if got := sns.Sentinel(io.EOF); got != nil {
		t.Errorf("Sentinel(io.EOF) = %v, want nil", got)
	}
}
