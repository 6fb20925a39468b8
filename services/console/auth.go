package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/httpserver"
)

// Cookie names. Both are HttpOnly, SameSite=Strict, Path=/console, and Secure
// when the request came over TLS, directly or through a proxy that says so
// (X-Forwarded-Proto: https). A client that lies about the latter only gets
// cookies its browser will not send over plain HTTP.
const (
	sessionCookie = "sdevents_console"
	csrfCookie    = "sdevents_console_csrf"
	csrfField     = "csrf"
)

// sessionTTL is how long a login lasts.
const sessionTTL = 12 * time.Hour

// errBadCSRF: a form was posted without the session's CSRF token (403). The
// page that holds the form must be reloaded.
var errBadCSRF = fmt.Errorf("%w: missing or wrong CSRF token: reload the page and try again", httpserver.ErrForbidden)

// auth checks the admin token and issues and checks sessions and CSRF
// tokens. A session cookie holds the issue time and a random nonce, signed
// with a key derived from the admin token, so every console replica accepts
// it and changing the token ends every session; the cookie never holds the
// token itself. Logging out records the session's id in the ended bucket
// (CONSOLE_SESSIONS, shared by every replica, entries kept longer than a
// session lives), and a session found there is refused.
type auth struct {
	token *admintoken.Checker // comparison and the brake on guessing
	key   []byte              // HMAC key of sessions and CSRF tokens
	ended jetstream.KeyValue  // sessions ended by logout; nil only in pure tests
	now   func() time.Time
}

// sessionCheckTimeout bounds one read or write of contract.BucketConsoleSessions when the
// request has no earlier deadline.
const sessionCheckTimeout = 5 * time.Second

func newAuth(token string, brake *admintoken.Brake, now func() time.Time) *auth {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("sdevents console session v1"))
	return &auth{token: admintoken.New(token, brake), key: mac.Sum(nil), now: now}
}

// presented checks a token presented by c's client, by login form or bearer
// header (admintoken.Checker.Check).
func (a *auth) presented(c echo.Context, token string) error {
	return a.token.Check(c.Response(), c.Request(), token)
}

func (a *auth) sign(parts ...[]byte) []byte {
	mac := hmac.New(sha256.New, a.key)
	for _, p := range parts {
		mac.Write(p)
		mac.Write([]byte{0})
	}
	return mac.Sum(nil)
}

var b64 = base64.RawURLEncoding

// newSession returns a session cookie value and its CSRF token.
func (a *auth) newSession() (cookie, csrf string) {
	payload := make([]byte, 8+16)
	binary.BigEndian.PutUint64(payload, uint64(a.now().Unix()))
	_, _ = rand.Read(payload[8:])
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(a.sign([]byte("session"), payload)), a.csrfFor(payload)
}

func (a *auth) csrfFor(payload []byte) string {
	return b64.EncodeToString(a.sign([]byte("csrf"), payload))
}

// session is a valid session cookie's: its CSRF token and its id, the key
// under which logging out records it.
type session struct {
	csrf string
	id   string
}

// session checks a session cookie value's signature and age. It does not
// look for the session among the ended ones (see isEnded).
func (a *auth) session(v string) (session, bool) {
	p, s, found := strings.Cut(v, ".")
	if !found {
		return session{}, false
	}
	payload, err1 := b64.DecodeString(p)
	sig, err2 := b64.DecodeString(s)
	if err1 != nil || err2 != nil || len(payload) != 24 {
		return session{}, false
	}
	if !hmac.Equal(sig, a.sign([]byte("session"), payload)) {
		return session{}, false
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(payload)), 0)
	if age := a.now().Sub(issued); age < -time.Minute || age > sessionTTL {
		return session{}, false
	}
	return session{csrf: a.csrfFor(payload), id: hex.EncodeToString(a.sign([]byte("id"), payload)[:16])}, true
}

// isEnded reports whether the session id was ended by logging out, on any
// replica. An error (the bucket cannot be read) must refuse the session:
// the caller answers 503.
func (a *auth) isEnded(ctx context.Context, id string) (bool, error) {
	ctx, cancel := withDefaultTimeout(ctx, sessionCheckTimeout)
	defer cancel()
	_, err := a.ended.Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("sessions: %w", err)
	}
	return true, nil
}

// end records the session id as ended, for every replica, until the entry
// expires with the bucket's TTL (longer than a session lives).
func (a *auth) end(ctx context.Context, id string) error {
	ctx, cancel := withDefaultTimeout(ctx, sessionCheckTimeout)
	defer cancel()
	if _, err := a.ended.Put(ctx, id, []byte(a.now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	return nil
}

// withDefaultTimeout bounds ctx by d unless it has a deadline already.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// Context keys of the authenticated request.
const (
	ctxCSRF    = "sdevents.console.csrf"
	ctxBearer  = "sdevents.console.bearer"
	ctxSession = "sdevents.console.session" // the session id
)

// require lets a request through with a valid session cookie or an
// `Authorization: Bearer <admin token>` header; otherwise it fails with
// httpserver.ErrUnauthorized (answered with the login form). A POST with a
// session must carry the session's CSRF token in the form field csrf and in
// the CSRF cookie; a POST with the bearer header needs none (a browser never
// adds that header on its own).
func (a *auth) require(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if got, ok := strings.CutPrefix(r.Header.Get(echo.HeaderAuthorization), "Bearer "); ok {
			if err := a.presented(c, strings.TrimSpace(got)); err != nil {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="sdevents console"`)
				return err
			}
			c.Set(ctxBearer, true)
			return next(c)
		}
		ck, err := r.Cookie(sessionCookie)
		if err != nil {
			return fmt.Errorf("%w: log in with the admin token", httpserver.ErrUnauthorized)
		}
		sess, ok := a.session(ck.Value)
		if !ok {
			return fmt.Errorf("%w: the session expired or is not valid: log in again", httpserver.ErrUnauthorized)
		}
		switch ended, err := a.isEnded(r.Context(), sess.id); {
		case err != nil:
			return fmt.Errorf("%w: cannot check the session: %v", httpserver.ErrUnavailable, err)
		case ended:
			return fmt.Errorf("%w: the session was ended by logging out: log in again", httpserver.ErrUnauthorized)
		}
		c.Set(ctxCSRF, sess.csrf)
		c.Set(ctxSession, sess.id)
		if r.Method == http.MethodPost {
			if err := checkCSRF(c, sess.csrf); err != nil {
				return err
			}
		}
		return next(c)
	}
}

// checkCSRF requires the CSRF cookie, then the form field csrf, to equal
// want. The cookie is checked before the form is read: a request without it
// is refused unread.
func checkCSRF(c echo.Context, want string) error {
	ck, err := c.Request().Cookie(csrfCookie)
	if want == "" || err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(want)) != 1 {
		return errBadCSRF
	}
	if err := readForm(c); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(field(c, csrfField)), []byte(want)) != 1 {
		return errBadCSRF
	}
	return nil
}

// csrfOf returns the CSRF token of the authenticated request ("" for a
// bearer request).
func csrfOf(c echo.Context) string {
	s, _ := c.Get(ctxCSRF).(string)
	return s
}

func setCookie(c echo.Context, name, value string, maxAge int) {
	c.SetCookie(&http.Cookie{
		Name: name, Value: value, Path: "/console", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Scheme() == "https",
	})
}

// loginCSRF returns the pre-session CSRF token of the login form: the one in
// the request's CSRF cookie, or a new random one set in a cookie.
func loginCSRF(c echo.Context) string {
	if ck, err := c.Request().Cookie(csrfCookie); err == nil && len(ck.Value) >= 22 {
		return ck.Value
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	v := b64.EncodeToString(b)
	setCookie(c, csrfCookie, v, int(sessionTTL/time.Second))
	return v
}

// handleLogin checks the token of the login form and starts a session. It
// refuses a request without the pre-session CSRF cookie, then a client the
// brake on guessing holds back, before it reads the form (limitForms has
// refused any other kind of body).
func (s *Service) handleLogin(c echo.Context) error {
	ck, err := c.Request().Cookie(csrfCookie)
	if err != nil || ck.Value == "" {
		return errBadCSRF
	}
	if err := s.auth.token.Allow(c.Response(), c.Request()); err != nil {
		return err
	}
	if err := checkCSRF(c, ck.Value); err != nil {
		return err
	}
	if err := s.auth.presented(c, field(c, "token")); err != nil {
		return err
	}
	session, csrf := s.auth.newSession()
	setCookie(c, sessionCookie, session, int(sessionTTL/time.Second))
	setCookie(c, csrfCookie, csrf, int(sessionTTL/time.Second))
	httpserver.Info(c).Outcome = "login"
	return c.Redirect(http.StatusSeeOther, "/console/jobs")
}

// handleLogout ends the session: on the server first (every replica refuses
// its cookie from then on), then in this browser. When the end cannot be
// recorded it fails with a 503 error and the session goes on. A bearer
// request has no session to end.
func (s *Service) handleLogout(c echo.Context) error {
	if id, ok := c.Get(ctxSession).(string); ok {
		if err := s.auth.end(c.Request().Context(), id); err != nil {
			return fmt.Errorf("%w: the session could not be ended, try again: %v", httpserver.ErrUnavailable, err)
		}
		httpserver.Info(c).Outcome = "logout"
	}
	setCookie(c, sessionCookie, "", -1)
	setCookie(c, csrfCookie, "", -1)
	return c.Redirect(http.StatusSeeOther, "/console/login")
}
