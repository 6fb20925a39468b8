package quota_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/quotatest"
)

// TestAdminClient: the client of the operator commands speaks the API that
// Routes serves: a grant, its repeat, the account's view, and an error
// carrying the server's status and message for a wrong token.
func TestAdminClient(t *testing.T) {
	t.Parallel()
	d := quotatest.Start(t, quotatest.Config(), 1, nil)
	ctx := context.Background()
	c := quota.AdminClient{Base: d.Base + "/", Token: quotatest.AdminToken}
	const token = "user-client/odd+chars"
	five := int64(5)
	ans, err := c.Grant(ctx, "token:"+token, quota.GrantRequest{Credits: &five, ID: "g-client"})
	if err != nil || ans.Account != quotatest.AcctOf(token) || ans.Balance != 5 || ans.Repeat {
		t.Fatalf("grant: %+v, %v", ans, err)
	}
	if ans, err = c.Grant(ctx, quotatest.AcctOf(token), quota.GrantRequest{Credits: &five, ID: "g-client"}); err != nil || !ans.Repeat || ans.Balance != 5 {
		t.Fatalf("repeated grant: %+v, %v", ans, err)
	}
	v, err := c.Account(ctx, "token:"+token)
	if err != nil || v.Account != quotatest.AcctOf(token) || v.Balance != 5 || len(v.Ledger) != 1 {
		t.Fatalf("account: %+v, %v", v, err)
	}
	wrong := quota.AdminClient{Base: d.Base, Token: "wrong"}
	if _, err := wrong.Account(ctx, quotatest.AcctOf(token)); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a wrong token: %v", err)
	}
}
