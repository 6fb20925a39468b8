package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/natstest"
)

func TestConsoleIsOffWithoutAdminToken(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	if _, err := New(context.Background(), Config{}, js, emptyStore(t), &stubQuota{}); !errors.Is(err, ErrDisabled) {
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
		{"POST", "/console/archive/1/retry"}, {"GET", "/console/dead"}, {"GET", "/console/live"}, {"GET", "/console/live/chart"},
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

// replica starts another console replica on the harness's NATS and returns
// its base URL.
func (h *harness) replica() string {
	h.t.Helper()
	svc, err := New(context.Background(), h.cfg, h.js, h.store, h.quota)
	if err != nil {
		h.t.Fatal(err)
	}
	hs := httpserver.New(zerolog.Nop(), prometheus.NewRegistry())
	svc.Routes(hs.Echo())
	srv := httptest.NewServer(hs.Echo())
	h.t.Cleanup(srv.Close)
	h.t.Cleanup(svc.Close)
	return srv.URL
}

// TestLogoutEndsTheSessionEverywhere: a session cookie captured before
// logging out is refused after it, for pages and forms, on the replica that
// logged out and on every other one; another session goes on.
func TestLogoutEndsTheSessionEverywhere(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	other := h.replica()
	c, csrf := h.login()
	kept, _ := h.login()
	var captured []string
	for _, ck := range c.Jar.Cookies(mustURL(t, h.srv.URL+"/console/")) {
		captured = append(captured, ck.Name+"="+ck.Value)
	}
	replay := func(base, method, path string, form url.Values) int {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Cookie", strings.Join(captured, "; "))
		resp, err := h.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, base := range []string{h.srv.URL, other} {
		if got := replay(base, http.MethodGet, "/console/jobs", nil); got != http.StatusOK {
			t.Fatalf("%s before logout: %d", base, got)
		}
	}
	if a := h.do(c, http.MethodPost, "/console/logout", url.Values{"csrf": {csrf}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", a.status, a.body)
	}
	for _, base := range []string{h.srv.URL, other} {
		if got := replay(base, http.MethodGet, "/console/jobs", nil); got != http.StatusUnauthorized {
			t.Errorf("%s: the session's cookie replayed after logout: %d, want 401", base, got)
		}
		if got := replay(base, http.MethodPost, "/console/accounts/find", url.Values{"csrf": {csrf}, "account": {"_"}}); got != http.StatusUnauthorized {
			t.Errorf("%s: a form with the session's cookie after logout: %d, want 401", base, got)
		}
	}
	if a := h.get(kept, "/console/jobs"); a.status != http.StatusOK {
		t.Errorf("another session after the logout: %d", a.status)
	}
}

// TestConsoleNeedsTheSessionsBucket: without the bucket of ended sessions,
// or with one that forgets them before they expire, New fails.
func TestConsoleNeedsTheSessionsBucket(t *testing.T) {
	t.Parallel()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	cfg, store := Config{AdminToken: adminToken}, emptyStore(t)
	ctx := context.Background()
	if err := js.DeleteKeyValue(ctx, contract.BucketConsoleSessions); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, cfg, js, store, &stubQuota{}); err == nil || !strings.Contains(err.Error(), contract.BucketConsoleSessions) {
		t.Fatalf("New without %s: %v", contract.BucketConsoleSessions, err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: contract.BucketConsoleSessions, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, cfg, js, store, &stubQuota{}); err == nil || !strings.Contains(err.Error(), "not longer than a session lives") {
		t.Fatalf("New with a bucket of 1 h: %v", err)
	}
}

// TestSessionsFailClosed: when the bucket of ended sessions cannot be read,
// a session is refused (503), not let in; the bearer token still works.
func TestSessionsFailClosed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c, _ := h.login()
	if err := h.js.DeleteKeyValue(context.Background(), contract.BucketConsoleSessions); err != nil {
		t.Fatal(err)
	}
	if a := h.get(c, "/console/jobs"); a.status != http.StatusServiceUnavailable {
		t.Fatalf("session without its bucket: %d, want 503", a.status)
	}
	if a := h.do(h.client(), http.MethodGet, "/console/jobs", nil, bearer); a.status != http.StatusOK {
		t.Fatalf("bearer without the sessions bucket: %d", a.status)
	}
}
