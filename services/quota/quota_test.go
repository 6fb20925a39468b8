package quota_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/quotaclient"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/services/quota/ledger"
	"github.com/sdevents/sdevents/services/quota/quotatest"
)

// The quota's own surfaces: the admin API, the operator and abandon
// requests over NATS, and a ledger loaded as written. The tests that send
// signed callbacks through the ingress are in e2e/quota.

// TestAdminAPIThrottlesGuessing: after admintoken.MaxFailures wrong bearer
// tokens from one address, the admin API answers 429 even to the right
// token; requests without a bearer token are not counted as guesses.
func TestAdminAPIThrottlesGuessing(t *testing.T) {
	t.Parallel()
	d := quotatest.Start(t, quotatest.Config(), 1, nil)
	path := "/v1/admin/accounts/" + quotatest.AcctOf("user-guess")
	for range 2 * admintoken.MaxFailures {
		if a := d.Admin(http.MethodGet, path, "", ""); a.Code != http.StatusUnauthorized {
			t.Fatalf("without a token: %d %s", a.Code, a.Raw)
		}
	}
	if a := d.Admin(http.MethodGet, path, quotatest.AdminToken, ""); a.Code != http.StatusOK {
		t.Fatalf("requests without a token were counted as guesses: %d %s", a.Code, a.Raw)
	}
	for i := range admintoken.MaxFailures {
		if a := d.Admin(http.MethodGet, path, fmt.Sprintf("guess-%d", i), ""); a.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d %s", i, a.Code, a.Raw)
		}
	}
	if a := d.Admin(http.MethodGet, path, quotatest.AdminToken, ""); a.Code != http.StatusTooManyRequests || a.Success() {
		t.Fatalf("the right token after %d guesses: %d %s, want 429", admintoken.MaxFailures, a.Code, a.Raw)
	}
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	d := quotatest.Start(t, quotatest.Config(), 1, nil)
	const token = "user-admin/with+odd chars"
	acct := quotatest.AcctOf(token)
	path := "/v1/admin/accounts/" + acct
	for _, bearer := range []string{"", "wrong", quotatest.AdminToken + "x"} {
		for _, req := range []struct{ method, path, body string }{
			{http.MethodGet, path, ""},
			{http.MethodPost, path + "/credits", `{"credits": 5}`},
		} {
			if a := d.Admin(req.method, req.path, bearer, req.body); a.Code != http.StatusUnauthorized || a.Success() {
				t.Fatalf("%s %s with %q: %d %s", req.method, req.path, bearer, a.Code, a.Raw)
			}
		}
	}
	if a := d.Grant(token, 5, ""); a.Body["balance"] != float64(5) || a.Body["account"] != acct {
		t.Fatalf("grant: %s", a.Raw)
	}
	if a := d.Admin(http.MethodPost, path+"/credits", quotatest.AdminToken, `{"credits": -6}`); a.Code != http.StatusConflict {
		t.Fatalf("removing more than the balance: %d %s", a.Code, a.Raw)
	}
	for _, body := range []string{`{"credits": 0}`, `{}`, `{"credits": "5"}`, `{"credits": 1, "extra": 1}`, `nope`} {
		if a := d.Admin(http.MethodPost, path+"/credits", quotatest.AdminToken, body); a.Code != http.StatusBadRequest {
			t.Fatalf("grant %s: %d %s", body, a.Code, a.Raw)
		}
	}
	if a := d.Admin(http.MethodGet, "/v1/admin/accounts/not-an-account", quotatest.AdminToken, ""); a.Code != http.StatusBadRequest {
		t.Fatalf("bad account: %d %s", a.Code, a.Raw)
	}
	if a := d.Decide(quotarpc.DecideRequest{BizType: callback.BizAPIPreInvoke, Account: acct, InvokeID: "i-1", Body: []byte(`{"batch_size":1,"n_iter":1}`)}); !a.Success {
		t.Fatalf("reserve: %+v", a)
	}
	v := d.View("token:" + token)
	if v.Account != acct || v.Balance != 4 || v.Reserved != 1 || len(v.Reservations) != 1 || v.Reservations[0].InvokeID != "i-1" ||
		len(v.Ledger) != 2 || v.Ledger[1].Type != ledger.TypeReserved {
		t.Fatalf("view: %+v", v)
	}
	if strings.Contains(d.Logs.String(), "user-admin") {
		t.Fatalf("a token reached the log:\n%s", d.Logs.String())
	}

	// Without a token the admin API does not exist.
	cfg := quotatest.Config()
	cfg.AdminToken = ""
	off := quotatest.Start(t, cfg, 1, nil)
	if a := off.Admin(http.MethodGet, path, quotatest.AdminToken, ""); a.Code != http.StatusNotFound {
		t.Fatalf("admin API without a token: %d %s", a.Code, a.Raw)
	}
}

func TestOverdueWithoutTimerExpiredOnLoad(t *testing.T) {
	t.Parallel()
	d := quotatest.Start(t, quotatest.Config(), 1, nil)
	acct := quotatest.AcctOf("user-no-timer")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A ledger written by someone else (an older version, a crash before the
	// timer): a reservation whose expiry passed and that has no timer.
	past := time.Now().Add(-time.Hour).UTC()
	for _, e := range []ledger.Event{
		{Type: ledger.TypeGranted, Account: acct, Credits: 4, Balance: 4, At: past},
		{Type: ledger.TypeReserved, Account: acct, InvokeID: "old", Credits: 1, Balance: 3, Reserved: 1, At: past, ExpiresAt: past.Add(time.Minute)},
	} {
		data, _ := json.Marshal(e)
		if _, err := d.JS.Publish(ctx, "sd.quota."+acct, data); err != nil {
			t.Fatal(err)
		}
	}
	if v := d.View(acct); v.Balance != 4 || v.Reserved != 0 {
		t.Fatalf("view after load: %+v", v)
	}
	evs := d.Events(acct)
	if last := evs[len(evs)-1]; last.Type != ledger.TypeExpired || last.InvokeID != "old" || last.Balance != 4 {
		t.Fatalf("last event %+v", last)
	}
	d.Replay()
}

// TestAbandonRequestsRefuseBadInput: an abandonment request that is not
// JSON, names no valid account or no invokeId is refused with a readable
// answer and stores nothing.
func TestAbandonRequestsRefuseBadInput(t *testing.T) {
	t.Parallel()
	d := quotatest.Start(t, quotatest.Config(), 1, nil)
	const token = "user-abandon-input"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 5, "")
	for name, payload := range map[string]string{
		"not json":      `{"account":`,
		"no account":    `{"invoke_id":"i-1"}`,
		"bad account":   `{"account":"a_../x","invoke_id":"i-1"}`,
		"no invoke id":  fmt.Sprintf(`{"account":%q}`, acct),
		"empty request": `{}`,
	} {
		resp, err := d.Replica(0).NC.Request(quotarpc.SubjectAbandon, []byte(payload), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var ans quotarpc.Answer
		if err := json.Unmarshal(resp.Data, &ans); err != nil || ans.Success || ans.ErrMessage == "" {
			t.Errorf("%s: answer %s", name, resp.Data)
		}
	}
	if n := len(d.Events(acct)); n != 1 {
		t.Fatalf("bad abandonment requests stored %d events", n-1)
	}
}

// TestGrantParsesStrictly: a grant body that a lenient JSON reader and an
// operator's tool could read differently — a key twice, a key in another
// case, data after the object, a number that is not an integer, an id that
// is not a string — is refused with 400 naming the problem, and changes
// nothing.
func TestGrantParsesStrictly(t *testing.T) {
	t.Parallel()
	d := quotatest.Start(t, quotatest.Config(), 1, nil)
	acct := quotatest.AcctOf("user-strict-grant")
	path := "/v1/admin/accounts/" + acct + "/credits"
	if a := d.Admin(http.MethodPost, path, quotatest.AdminToken, `{"credits": 5}`); a.Code != http.StatusOK {
		t.Fatalf("grant: %d %s", a.Code, a.Raw)
	}
	for _, tc := range []struct{ body, wantIn string }{
		{`{"credits": 1, "credits": 500}`, `key "credits" given twice`},
		{`{"credits": 5, "id": "a", "id": "b"}`, `key "id" given twice`},
		{`{"Credits": 500}`, `unknown key "Credits"`},
		{`{"CREDITS": 500}`, `unknown key "CREDITS"`},
		{`{"credits": 5, "ID": "x"}`, `unknown key "ID"`},
		{`{"credits": 5} {"credits": 5}`, "data after the object"},
		{`{"credits": 5}x`, "data after the object"},
		{`{"credits": 5},`, "data after the object"},
		{`{"credits": 1.0}`, "not an integer"},
		{`{"credits": 1e3}`, "not an integer"},
		{`{"credits": "5"}`, "not an integer"},
		{`{"credits": 99999999999999999999}`, "not an integer"},
		{`{"credits": 5, "id": 7}`, "not a string"},
		{`{"credits": 5, "id": null}`, "not a string"},
		{`[{"credits": 5}]`, "not a JSON object"},
		{"{\"credits\": 5, \"id\": \"caf\xe9\"}", "not UTF-8"},
		{`{"id": "x"}`, "credits is required"},
		{`{"credits": 5`, "malformed"},
	} {
		a := d.Admin(http.MethodPost, path, quotatest.AdminToken, tc.body)
		if a.Code != http.StatusBadRequest || a.Success() || !strings.Contains(a.ErrMessage(), tc.wantIn) {
			t.Errorf("%s: %d %s, want 400 saying %q", tc.body, a.Code, a.Raw, tc.wantIn)
		}
	}
	if v := d.View(acct); v.Balance != 5 || len(v.Ledger) != 1 {
		t.Fatalf("refused grants changed the account: balance %d, %d events", v.Balance, len(v.Ledger))
	}
	// Escapes and white space are JSON, not another key.
	if a := d.Admin(http.MethodPost, path, quotatest.AdminToken, " {\"cr\\u0065dits\" : 2 , \"id\":\"g\"}\n "); a.Code != http.StatusOK || a.Body["balance"] != float64(7) {
		t.Fatalf("grant with an escaped key: %d %s", a.Code, a.Raw)
	}
}

// TestOperatorRequestsOverNATS: grants and account states asked over NATS
// (quotaclient, as the console asks) are answered by one replica of the
// queue group each, with the admin API's rules: a repeated grant id
// changes nothing, a reused one, zero credits or an invalid account are
// ErrInvalid, a removal beyond the balance ErrInsufficientCredits. A
// request that is not JSON, has an unknown field or is over the size limit
// is ErrInvalid and stores nothing.
func TestOperatorRequestsOverNATS(t *testing.T) {
	t.Parallel()
	d := quotatest.Start(t, quotatest.Config(), 2, nil)
	nc, _ := natstest.Connect(t, d.Node.URL())
	c := quotaclient.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	acct := quotatest.AcctOf("user-rpc")

	ans, err := c.Grant(ctx, quotarpc.GrantRequest{Account: acct, Credits: 5, ID: "g-1"})
	if err != nil || !ans.Success || ans.Balance != 5 || ans.Repeat || ans.Account != acct {
		t.Fatalf("grant: %+v, %v", ans, err)
	}
	if ans, err := c.Grant(ctx, quotarpc.GrantRequest{Account: acct, Credits: 5, ID: "g-1"}); err != nil || !ans.Repeat || ans.Balance != 5 {
		t.Fatalf("repeated grant: %+v, %v", ans, err)
	}
	for _, tc := range []struct {
		name    string
		req     quotarpc.GrantRequest
		wantErr error
		wantIn  string
	}{
		{"id reused for other credits", quotarpc.GrantRequest{Account: acct, Credits: 3, ID: "g-1"}, quotarpc.ErrInvalid, "already used"},
		{"zero credits", quotarpc.GrantRequest{Account: acct}, quotarpc.ErrInvalid, "zero"},
		{"removal beyond the balance", quotarpc.GrantRequest{Account: acct, Credits: -6}, quotarpc.ErrInsufficientCredits, "cannot remove"},
		{"a token for an account", quotarpc.GrantRequest{Account: "token:user-rpc", Credits: 1}, quotarpc.ErrInvalid, "invalid account"},
		{"no account", quotarpc.GrantRequest{Credits: 1}, quotarpc.ErrInvalid, "invalid account"},
	} {
		if _, err := c.Grant(ctx, tc.req); !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantIn) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.wantErr, tc.wantIn)
		}
	}
	for name, payload := range map[string]string{
		"not json":      `{"account":`,
		"unknown field": fmt.Sprintf(`{"account":%q,"credits":1,"extra":1}`, acct),
		"data after":    fmt.Sprintf(`{"account":%q,"credits":1} {}`, acct),
		"too large":     fmt.Sprintf(`{"account":%q,"credits":1,"id":%q}`, acct, strings.Repeat("x", quotarpc.MaxOperatorRequest)),
	} {
		resp, err := nc.Request(quotarpc.SubjectGrant, []byte(payload), 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var r quotarpc.Reply
		if err := json.Unmarshal(resp.Data, &r); err != nil {
			t.Fatalf("%s: reply %q: %v", name, resp.Data, err)
		}
		if err := r.Decode(&ans); !errors.Is(err, quotarpc.ErrInvalid) {
			t.Errorf("%s: %v, want %v", name, err, quotarpc.ErrInvalid)
		}
	}
	if n := len(d.Events(acct)); n != 1 {
		t.Fatalf("%d events, want the one grant", n)
	}
	// Every grant that reached the ledger was decided once, by one replica.
	if n := d.Decisions("grant"); n != 5 {
		t.Fatalf("%d grant decisions over both replicas, want 5", n)
	}

	if a := d.Decide(quotarpc.DecideRequest{BizType: callback.BizAPIPreInvoke, Account: acct, InvokeID: "held", Body: []byte(`{"batch_size":1,"n_iter":1}`)}); !a.Success {
		t.Fatalf("reserve: %+v", a)
	}
	st, err := c.Account(ctx, acct)
	v := d.View(acct)
	if err != nil || st.Account != acct || st.Balance != 4 || st.Reserved != 1 || st.Granted != 5 ||
		len(st.Reservations) != 1 || st.Reservations[0].InvokeID != "held" || st.Reservations[0].ExpiresAt.IsZero() ||
		st.Balance != v.Balance || !st.Reservations[0].ExpiresAt.Equal(v.Reservations[0].ExpiresAt) {
		t.Fatalf("account: %+v, %v; the admin API: %+v", st, err, v)
	}
	if _, err := c.Account(ctx, "token:user-rpc"); !errors.Is(err, quotarpc.ErrInvalid) {
		t.Fatalf("account by token: %v, want %v", err, quotarpc.ErrInvalid)
	}
}
