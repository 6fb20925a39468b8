package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/natstest"
)

func TestConsoleIsOffWithoutAdminToken(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	nc, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	cfg := config.Default()
	cfg.Archive.Dir = t.TempDir()
	if _, err := New(context.Background(), cfg, nc); !errors.Is(err, ErrDisabled) {
		t.Fatalf("New without admin.token: %v, want ErrDisabled", err)
	}
}

// TestEveryPageNeedsTheAdminToken: without a session or with a wrong token
// every page and form answers 401 with the login form; the right bearer
// token opens them.
func TestEveryPageNeedsTheAdminToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	routes := []struct{ method, path string }{
		{"GET", "/console/jobs"}, {"GET", "/console/jobs/1"}, {"GET", "/console/thumb?key=a/b.png"},
		{"GET", "/console/image?key=a/b.png"}, {"GET", "/console/accounts"}, {"GET", "/console/accounts/_"},
		{"POST", "/console/accounts/grant"}, {"POST", "/console/accounts/find"}, {"GET", "/console/archive"},
		{"POST", "/console/archive/1/retry"}, {"GET", "/console/live"}, {"GET", "/console/live/chart"},
		{"GET", "/console/live/stream"}, {"POST", "/console/logout"},
	}
	for _, r := range routes {
		for name, hdr := range map[string]map[string]string{
			"no token":           nil,
			"wrong bearer":       {"Authorization": "Bearer not-the-token"},
			"token as cookie":    {"Cookie": sessionCookie + "=" + adminToken},
			"forged session":     {"Cookie": sessionCookie + "=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAA"},
			"basic, not bearer:": {"Authorization": "Basic " + adminToken},
		} {
			var form url.Values
			if r.method == "POST" {
				form = url.Values{"credits": {"5"}, "account": {"_"}}
			}
			h.svc.brake.Forget() // this test counts pages, not guesses (TestGuessingIsThrottled)
			a := h.do(h.client(), r.method, r.path, form, hdr)
			if a.status != http.StatusUnauthorized {
				t.Errorf("%s %s (%s): %d, want 401", r.method, r.path, name, a.status)
				continue
			}
			if !strings.Contains(a.body, `id="login-form"`) {
				t.Errorf("%s %s (%s): the 401 page has no login form", r.method, r.path, name)
			}
			if strings.Contains(a.body, adminToken) {
				t.Errorf("%s %s (%s): the page shows the admin token", r.method, r.path, name)
			}
		}
	}
	if a := h.do(h.client(), "GET", "/console/jobs", nil, bearer); a.status != http.StatusOK {
		t.Fatalf("bearer: %d %s", a.status, a.body)
	}
}

func TestLoginSessionAndLogout(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	c := h.client()
	// The script and style sheet are public; nothing else is.
	for path, want := range map[string]string{
		"/console/static/console.js":  "text/javascript; charset=utf-8",
		"/console/static/console.css": "text/css; charset=utf-8",
	} {
		if a := h.get(c, path); a.status != http.StatusOK || a.header.Get("Content-Type") != want {
			t.Errorf("%s: %d %s", path, a.status, a.header.Get("Content-Type"))
		}
	}
	for _, path := range []string{"/console/static/nope.js", "/console/static/../templates/layout.html", "/console/static/"} {
		if a := h.get(c, path); a.status != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, a.status)
		}
	}
	if a := h.get(c, "/console"); a.status != http.StatusSeeOther {
		t.Errorf("/console: %d", a.status)
	}
	form := h.get(c, "/console/login")
	csrf := csrfIn(t, form.body)
	for _, tc := range []struct {
		name   string
		form   url.Values
		client *http.Client
		want   int
	}{
		{"wrong token", url.Values{"csrf": {csrf}, "token": {"nope"}}, c, http.StatusUnauthorized},
		{"empty token", url.Values{"csrf": {csrf}, "token": {""}}, c, http.StatusUnauthorized},
		{"missing csrf", url.Values{"token": {adminToken}}, c, http.StatusForbidden},
		{"wrong csrf", url.Values{"csrf": {"x" + csrf}, "token": {adminToken}}, c, http.StatusForbidden},
		{"no csrf cookie", url.Values{"csrf": {csrf}, "token": {adminToken}}, h.client(), http.StatusForbidden},
	} {
		if a := h.do(tc.client, "POST", "/console/login", tc.form, nil); a.status != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, a.status, tc.want)
		}
	}

	a := h.do(c, "POST", "/console/login", url.Values{"csrf": {csrf}, "token": {adminToken}}, nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/console/jobs" {
		t.Fatalf("login: %d %q", a.status, a.header.Get("Location"))
	}
	for _, ck := range a.header.Values("Set-Cookie") {
		if !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") || !strings.Contains(ck, "Path=/console") {
			t.Errorf("cookie without HttpOnly, SameSite=Strict, Path=/console: %s", ck)
		}
		if strings.Contains(ck, adminToken) {
			t.Errorf("a cookie holds the admin token: %s", ck)
		}
	}
	page := h.get(c, "/console/jobs")
	if page.status != http.StatusOK || !strings.Contains(page.body, "Log out") {
		t.Fatalf("jobs after login: %d", page.status)
	}
	if strings.Contains(page.body, adminToken) {
		t.Fatal("a page shows the admin token")
	}
	for _, k := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options"} {
		if page.header.Get(k) == "" {
			t.Errorf("no %s header", k)
		}
	}

	// The session ends after its lifetime.
	later := time.Now().Add(sessionTTL + time.Minute)
	h.now.Store(&later)
	if a := h.get(c, "/console/jobs"); a.status != http.StatusUnauthorized {
		t.Fatalf("expired session: %d", a.status)
	}
	h.now.Store(nil)

	// Logging out needs the CSRF token, then ends the session.
	if a := h.do(c, "POST", "/console/logout", url.Values{"csrf": {"wrong"}}, nil); a.status != http.StatusForbidden {
		t.Fatalf("logout with a wrong csrf token: %d", a.status)
	}
	csrf = csrfIn(t, page.body)
	if a := h.do(c, "POST", "/console/logout", url.Values{"csrf": {csrf}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("logout: %d", a.status)
	}
	if a := h.get(c, "/console/jobs"); a.status != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", a.status)
	}
}

// TestSessionOfAnotherTokenIsRefused: a session cookie signed under another
// admin token (the token was changed) is refused.
func TestSessionOfAnotherTokenIsRefused(t *testing.T) {
	t.Parallel()
	old := newAuth("old-token", nil, time.Now)
	cookie, _ := old.newSession()
	cur := newAuth("new-token", nil, time.Now)
	if _, ok := cur.session(cookie); ok {
		t.Fatal("a session of the old token is accepted")
	}
	if _, ok := old.session(cookie); !ok {
		t.Fatal("a fresh session is refused")
	}
	if _, ok := old.session(cookie + "x"); ok {
		t.Fatal("a tampered session is accepted")
	}
}

// TestGuessingIsThrottled: after admintoken.MaxFailures wrong tokens from one address,
// through the login form or the bearer header, that address is refused with
// 429 and Retry-After, even with the right token, until the window of its
// first failure has passed; then the right token works again.
func TestGuessingIsThrottled(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client()
	csrf := csrfIn(t, h.get(c, "/console/login").body)
	login := func(token string) answer {
		return h.do(c, "POST", "/console/login", url.Values{"csrf": {csrf}, "token": {token}}, nil)
	}
	start := time.Now()
	h.now.Store(&start)
	for i := range admintoken.MaxFailures {
		var a answer
		if i%2 == 0 {
			a = login(fmt.Sprintf("guess-%d", i))
		} else {
			a = h.do(h.client(), "GET", "/console/jobs", nil, map[string]string{"Authorization": fmt.Sprintf("Bearer guess-%d", i)})
		}
		if a.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, a.status)
		}
	}
	for name, a := range map[string]answer{
		"login":  login(adminToken),
		"bearer": h.do(h.client(), "GET", "/console/jobs", nil, map[string]string{"Authorization": "Bearer " + adminToken}),
	} {
		if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "60" {
			t.Errorf("%s after %d wrong tokens: %d, Retry-After %q; want 429, 60", name, admintoken.MaxFailures, a.status, a.header.Get("Retry-After"))
		}
	}
	later := start.Add(admintoken.Window + time.Second)
	h.now.Store(&later)
	if a := login(adminToken); a.status != http.StatusSeeOther {
		t.Fatalf("login after the window: %d", a.status)
	}
}

// TestSecureCookiesBehindTLS: a request that came over HTTPS, here as a
// proxy reports it, gets Secure cookies; a plain one does not.
func TestSecureCookiesBehindTLS(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for proto, want := range map[string]bool{"https": true, "": false} {
		hdr := map[string]string{}
		if proto != "" {
			hdr["X-Forwarded-Proto"] = proto
		}
		a := h.do(h.client(), "GET", "/console/login", nil, hdr)
		cookies := a.header.Values("Set-Cookie")
		if len(cookies) == 0 {
			t.Fatalf("%q: no cookie", proto)
		}
		for _, ck := range cookies {
			if got := strings.Contains(ck, "; Secure"); got != want {
				t.Errorf("X-Forwarded-Proto %q: Secure %v, want %v: %s", proto, got, want, ck)
			}
		}
	}
}
