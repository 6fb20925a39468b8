package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// TestGrantFormAsksTheQuota: the grant form asks the quota service for the
// grant (the account resolved from a token, which never lands in a URL;
// the form's idempotency id) and redirects to the account's page, which
// shows the quota's balance; it needs the session's CSRF token (a bearer
// request does not). A form the console cannot read is refused before the
// quota is asked; the quota's refusals are answered as the admin API
// answers them: ErrInvalid 400, ErrInsufficientCredits 409, ErrUnavailable
// 503, with their text.
func TestGrantFormAsksTheQuota(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c, csrf := h.login()
	acct := account.FromToken("user-grant")
	h.publish("sd.quota."+acct, event.Meta{}, contract.QuotaEvent{Type: contract.QuotaGranted, Account: acct, Credits: 7, Balance: 7, ID: "g-1", At: time.Now()}, nil)

	grant := func(form url.Values) answer {
		t.Helper()
		if form.Get("csrf") == "" {
			form.Set("csrf", csrf)
		}
		return h.do(c, http.MethodPost, "/console/accounts/grant", form, nil)
	}
	a := grant(url.Values{"account": {acct}, "credits": {"7"}, "id": {"g-1"}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/console/accounts/"+acct+"?granted=7" {
		t.Fatalf("grant: %d %q %s", a.status, a.header.Get("Location"), a.body)
	}
	page := h.get(c, a.header.Get("Location"))
	if page.status != http.StatusOK || !strings.Contains(page.body, `<dd id="balance" class="num">7</dd>`) ||
		!strings.Contains(page.body, "Granted 7 credits") || !strings.Contains(page.body, "g-1") {
		t.Fatalf("account page after the grant: %d\n%s", page.status, page.body)
	}

	// A repeat, as the quota answers it.
	h.quota.answer(nil, true)
	a = grant(url.Values{"account": {acct}, "credits": {"7"}, "id": {"g-1"}})
	if a.status != http.StatusSeeOther || !strings.Contains(a.header.Get("Location"), "repeat=1") {
		t.Fatalf("repeated grant: %d %q", a.status, a.header.Get("Location"))
	}
	if page := h.get(c, a.header.Get("Location")); !strings.Contains(page.body, "already applied") {
		t.Fatalf("account page after a repeat:\n%s", page.body)
	}
	h.quota.answer(nil, false)
	// By token, through the find form too: the token never lands in a URL.
	a = grant(url.Values{"account": {"token:user-grant"}, "credits": {"-2"}})
	if a.status != http.StatusSeeOther || strings.Contains(a.header.Get("Location"), "user-grant") {
		t.Fatalf("grant by token: %d %q", a.status, a.header.Get("Location"))
	}
	a = h.do(c, http.MethodPost, "/console/accounts/find", url.Values{"csrf": {csrf}, "account": {"token:user-grant"}}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/console/accounts/"+acct {
		t.Fatalf("find by token: %d %q", a.status, a.header.Get("Location"))
	}
	page = h.get(c, "/console/accounts/"+acct)
	if !strings.Contains(page.body, `<dd id="balance" class="num">5</dd>`) {
		t.Fatalf("balance after removing 2: \n%s", page.body)
	}
	want := []quotarpc.GrantRequest{{Account: acct, Credits: 7, ID: "g-1"}, {Account: acct, Credits: 7, ID: "g-1"}, {Account: acct, Credits: -2}}
	if got := h.quota.granted(); !slices.Equal(got, want) {
		t.Fatalf("grants asked %+v, want %+v", got, want)
	}

	for _, tc := range []struct {
		name  string
		form  url.Values
		quota error // the quota's answer; nil = the form is refused before the quota is asked
		want  int
		msg   string
	}{
		{"non-integer credits", url.Values{"account": {acct}, "credits": {"1.5"}}, nil, http.StatusBadRequest, "want an integer"},
		{"words for credits", url.Values{"account": {acct}, "credits": {"ten"}}, nil, http.StatusBadRequest, "want an integer"},
		{"empty credits", url.Values{"account": {acct}, "credits": {""}}, nil, http.StatusBadRequest, "want an integer"},
		{"unknown account form", url.Values{"account": {"bob"}, "credits": {"1"}}, nil, http.StatusBadRequest, "invalid account"},
		{"empty account", url.Values{"account": {""}, "credits": {"1"}}, nil, http.StatusBadRequest, "invalid account"},
		{"empty token", url.Values{"account": {"token:"}, "credits": {"1"}}, nil, http.StatusBadRequest, "invalid account"},
		{"bad csrf", url.Values{"account": {acct}, "credits": {"1"}, "csrf": {"forged"}}, nil, http.StatusForbidden, "CSRF"},
		{"refused by the quota", url.Values{"account": {acct}, "credits": {"0"}},
			fmt.Errorf("%w: grant of zero credits", quotarpc.ErrInvalid), http.StatusBadRequest, "grant of zero credits"},
		{"not enough credits", url.Values{"account": {acct}, "credits": {"-100"}},
			fmt.Errorf("%w: cannot remove 100 credits", quotarpc.ErrInsufficientCredits), http.StatusConflict, "cannot remove"},
		{"no quota replica", url.Values{"account": {acct}, "credits": {"1"}},
			fmt.Errorf("%w: no responders", quotarpc.ErrUnavailable), http.StatusServiceUnavailable, "no responders"},
	} {
		h.quota.answer(tc.quota, false)
		asked := len(h.quota.granted())
		a := grant(tc.form)
		if a.status != tc.want || !strings.Contains(a.body, tc.msg) {
			t.Errorf("%s: %d, want %d with %q:\n%s", tc.name, a.status, tc.want, tc.msg, a.body)
		}
		if n := len(h.quota.granted()) - asked; (tc.quota != nil) != (n == 1) {
			t.Errorf("%s: the quota was asked %d times", tc.name, n)
		}
	}
	h.quota.answer(nil, false)
	// Without the CSRF cookie, the field alone is not enough.
	noCookie := h.client()
	noCookie.Jar.SetCookies(mustURL(t, h.srv.URL+"/console/"), filterCookies(c, h.srv.URL+"/console/", sessionCookie))
	if a := h.do(noCookie, http.MethodPost, "/console/accounts/grant", url.Values{"csrf": {csrf}, "account": {acct}, "credits": {"1"}}, nil); a.status != http.StatusForbidden {
		t.Errorf("grant without the CSRF cookie: %d", a.status)
	}
	// A bearer request needs no CSRF token.
	if a := h.do(h.client(), http.MethodPost, "/console/accounts/grant", url.Values{"account": {acct}, "credits": {"1"}}, bearer); a.status != http.StatusSeeOther {
		t.Errorf("grant with the bearer token: %d %s", a.status, a.body)
	}
	page = h.get(c, "/console/accounts/"+acct)
	if !strings.Contains(page.body, `<dd id="balance" class="num">6</dd>`) {
		t.Fatalf("only the good grants count: \n%s", page.body)
	}
	for _, secret := range []string{"user-grant", adminToken} {
		if strings.Contains(page.body, secret) {
			t.Errorf("account page shows %q", secret)
		}
	}
}

func TestAccountsListAndAccountPage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c, _ := h.login()
	// The ledger events of three grants, then another to u1, as the quota
	// appends them.
	granted := func(id string, credits, balance int64) {
		h.publish("sd.quota."+id, event.Meta{}, contract.QuotaEvent{Type: contract.QuotaGranted, Account: id, Credits: credits, Balance: balance, At: time.Now()}, nil)
	}
	var ids []string
	for i, tok := range []string{"u1", "u2", "u3"} {
		id := account.FromToken(tok)
		ids = append(ids, id)
		granted(id, int64(10*(i+1)), int64(10*(i+1)))
	}
	granted(ids[0], 1, 11) // u1 is the latest now
	list := h.get(c, "/console/accounts")
	if list.status != http.StatusOK {
		t.Fatalf("accounts: %d", list.status)
	}
	p0, p1, p2 := strings.Index(list.body, ids[0]), strings.Index(list.body, ids[1]), strings.Index(list.body, ids[2])
	if p0 < 0 || p1 < 0 || p2 < 0 || !(p0 < p2 && p2 < p1) {
		t.Fatalf("accounts not by latest activity (%d %d %d):\n%s", p0, p1, p2, list.body)
	}
	if strings.Count(list.body, ">"+ids[0]+"<") != 1 {
		t.Errorf("account %s listed more than once", ids[0])
	}
	if !strings.Contains(list.body, `<td class="num">11</td>`) {
		t.Errorf("u1's balance 11 is not listed")
	}
	// The second page (before u1's latest grant) does not list u1 again.
	a := h.get(c, "/console/accounts?before=4")
	if strings.Contains(a.body, ids[0]) || !strings.Contains(a.body, ids[2]) {
		t.Errorf("older page: \n%s", a.body)
	}

	for path, want := range map[string]int{
		"/console/accounts/" + ids[1]:                 http.StatusOK,
		"/console/accounts/" + account.FromToken("x"): http.StatusNotFound, // no ledger events
		"/console/accounts/bob":                       http.StatusBadRequest,
		"/console/accounts?before=nope":               http.StatusBadRequest,
		"/console/accounts/" + ids[1] + "?before=-1":  http.StatusBadRequest,
	} {
		if a := h.get(c, path); a.status != want {
			t.Errorf("%s: %d, want %d", path, a.status, want)
		}
	}
	if a := h.get(c, "/console/accounts/"+account.FromToken("x")); !strings.Contains(a.body, "unknown account") {
		t.Errorf("unknown account page: %s", a.body)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// filterCookies returns the cookies of c for u named name.
func filterCookies(c *http.Client, u, name string) []*http.Cookie {
	pu, _ := url.Parse(u)
	var out []*http.Cookie
	for _, ck := range c.Jar.Cookies(pu) {
		if ck.Name == name {
			out = append(out, &http.Cookie{Name: ck.Name, Value: ck.Value, Path: "/console"})
		}
	}
	return out
}
