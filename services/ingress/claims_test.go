package ingress

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// TestClaimTTL: a claim lasts until the widest freshness window of its
// timestamp closes, plus the margin, in whole seconds, and never less than
// one second.
func TestClaimTTL(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const widest = 6 * time.Hour
	for _, tc := range []struct {
		name string
		ts   time.Time
		want time.Duration
	}{
		{"fresh", now, widest + claimMargin + time.Second},
		{"five minutes ahead", now.Add(5 * time.Minute), widest + 5*time.Minute + claimMargin + time.Second},
		{"almost stale", now.Add(-widest + 1500*time.Millisecond), claimMargin + 2*time.Second},
		{"stale", now.Add(-2 * widest), time.Second},
	} {
		if got := claimTTL(tc.ts, now, widest); got != tc.want {
			t.Errorf("%s: claimTTL = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestClaimOnce: the first claim of a key wins; the same value again is
// accepted, another is errReplayed; once the claim's TTL has passed, the key
// is free again.
func TestClaimOnce(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	stream, err := js.Stream(t.Context(), contract.StreamIngressClaims)
	if err != nil {
		t.Fatal(err)
	}
	c := &claims{js: js, stream: stream, timeout: 5 * time.Second}
	p := callback.Params{APIID: "api", BizType: callback.BizTaskFinished, InvokeID: "i-1", Nonce: "n", Timestamp: "1"}
	key, value := claimKey("default", "sign"), claimValue(p)
	if err := c.claim(t.Context(), key, value, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.claim(t.Context(), key, value, time.Second); err != nil {
		t.Fatalf("the same request again: %v", err)
	}
	shifted := p
	shifted.APIID, shifted.InvokeID = "apii", "-1"
	if err := c.claim(t.Context(), key, claimValue(shifted), time.Second); !errors.Is(err, errReplayed) {
		t.Fatalf("another request with the sign: %v, want errReplayed", err)
	}
	if claimKey("other", "sign") == key {
		t.Fatal("keys of two sources collide")
	}
	natstest.Eventually(t, 10*time.Second, "the claim to expire", func() bool {
		_, err := stream.GetLastMsgForSubject(t.Context(), contract.SubjectIngressClaim+key)
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})
	if err := c.claim(t.Context(), key, claimValue(shifted), time.Second); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}
