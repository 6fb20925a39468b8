package quotarpc_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// TestReplyCarriesTheSentinel: an operator reply sent as JSON comes back as
// the result, or as an error with the replica's text that wraps the same
// sentinel; an error of no known kind stays an error, wrapping none.
func TestReplyCarriesTheSentinel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		err     error
		wantErr error // nil: the result comes back
	}{
		{"result", nil, nil},
		{"invalid", fmt.Errorf("%w: grant of zero credits", quotarpc.ErrInvalid), quotarpc.ErrInvalid},
		{"insufficient", fmt.Errorf("%w: cannot remove 6 credits", quotarpc.ErrInsufficientCredits), quotarpc.ErrInsufficientCredits},
		{"unavailable", fmt.Errorf("grant not stored: %w", quotarpc.ErrUnavailable), quotarpc.ErrUnavailable},
		{"other", errors.New("something else"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := quotarpc.GrantAnswer{Success: true, Account: "a_x", Credits: 5, Balance: 5}
			raw, err := json.Marshal(quotarpc.NewReply(want, tc.err))
			if err != nil {
				t.Fatal(err)
			}
			var r quotarpc.Reply
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
			}
			var got quotarpc.GrantAnswer
			err = r.Decode(&got)
			switch {
			case tc.err == nil:
				if err != nil || got != want {
					t.Fatalf("Decode = %+v, %v; want %+v", got, err, want)
				}
			case err == nil || err.Error() != tc.err.Error():
				t.Fatalf("Decode error %v, want the text %q", err, tc.err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Decode error %v does not wrap %v", err, tc.wantErr)
			case tc.wantErr == nil:
				for _, s := range []error{quotarpc.ErrInvalid, quotarpc.ErrInsufficientCredits, quotarpc.ErrUnavailable} {
					if errors.Is(err, s) {
						t.Fatalf("Decode error %v wraps %v", err, s)
					}
				}
			}
		})
	}
}
