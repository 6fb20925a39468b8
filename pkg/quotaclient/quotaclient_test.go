package quotaclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/quotaclient"
	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// TestWithoutReplicaIsUnavailable: with no quota replica subscribed, or one
// whose reply cannot be read, a grant and an account request fail with
// quotarpc.ErrUnavailable instead of hanging. (The answers of real replicas
// are tested in services/quota.)
func TestWithoutReplicaIsUnavailable(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	nc, _ := natstest.Connect(t, node.URL())
	c := quotaclient.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Grant(ctx, quotarpc.GrantRequest{Account: "a_aaaaaaaaaaaaaaaaaaaaaaaaaa", Credits: 1}); !errors.Is(err, quotarpc.ErrUnavailable) {
		t.Fatalf("grant without a replica: %v, want %v", err, quotarpc.ErrUnavailable)
	}

	garbled, _ := natstest.Connect(t, node.URL())
	if _, err := garbled.QueueSubscribe(quotarpc.SubjectAccount, quotarpc.QueueGroup, func(m *nats.Msg) { _ = m.Respond([]byte("not json")) }); err != nil {
		t.Fatal(err)
	}
	if err := garbled.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Account(ctx, "a_aaaaaaaaaaaaaaaaaaaaaaaaaa"); !errors.Is(err, quotarpc.ErrUnavailable) {
		t.Fatalf("account with an undecodable reply: %v, want %v", err, quotarpc.ErrUnavailable)
	}
}
