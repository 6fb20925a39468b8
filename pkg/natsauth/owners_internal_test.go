package natsauth

import (
	"strings"
	"testing"
)

// TestEveryDurableHasOneOwner: a durable consumer added to streams/ without
// an owner here, or an owned one that streams/ no longer defines, is an
// error naming it — so no user is left denied, or allowed, by accident.
func TestEveryDurableHasOneOwner(t *testing.T) {
	t.Parallel()
	b := &builder{}
	for _, ds := range owned {
		b.durables = append(b.durables, ds...)
	}
	if err := b.checkOwners(); err != nil {
		t.Fatalf("the owned durables: %v", err)
	}
	b.durables = append(b.durables[1:], durable{"INGRESS", "billing"})
	err := b.checkOwners()
	if err == nil || !strings.Contains(err.Error(), "INGRESS/billing of streams/ has no owner") || !strings.Contains(err.Error(), "which streams/ does not define") {
		t.Fatalf("err = %v", err)
	}
}
