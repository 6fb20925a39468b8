package quota

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// adminTimeout bounds one operator request.
const adminTimeout = 10 * time.Second

// maxGrantBody bounds a grant request body.
const maxGrantBody = 4 << 10

// GrantRequest is the body of POST /v1/admin/accounts/{account}/credits.
type GrantRequest struct {
	// Credits to add; negative removes them. Required, not zero.
	Credits *int64 `json:"credits"`
	// ID makes the grant idempotent: a repeat with the same id and credits
	// changes nothing.
	ID string `json:"id,omitempty"`
}

// GrantAnswer answers a grant: the account's state after it.
type GrantAnswer struct {
	Success  bool   `json:"success"`
	Account  string `json:"account"`
	Credits  int64  `json:"credits"`
	ID       string `json:"id,omitempty"`
	Balance  int64  `json:"balance"`
	Reserved int64  `json:"reserved"`
	// Repeat is true when the grant id had already been applied: nothing
	// changed.
	Repeat bool `json:"repeat"`
}

// AccountView answers GET /v1/admin/accounts/{account} (CONTRACT §7).
type AccountView struct {
	Account      string            `json:"account"`
	Balance      int64             `json:"balance"`
	Reserved     int64             `json:"reserved"`
	Granted      int64             `json:"granted"`
	Committed    int64             `json:"committed"`
	Reservations []OpenReservation `json:"reservations"`
	// Ledger holds the account's latest events (at most 50), oldest first.
	Ledger []StoredEvent `json:"ledger"`
}

// OpenReservation is one open reservation of an account.
type OpenReservation struct {
	InvokeID string `json:"invoke_id"`
	ledger.Reservation
}

// redactPath rewrites the logged request path so that an account addressed as
// token:<token> appears as its account id: the shared request log writes the
// path, and a token must never reach a log. Routing is already done.
func (s *Service) redactPath(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw := accountParam(c)
		c.Set(accountKey, raw)
		if raw != "" {
			shown := "[invalid]"
			if id, err := account.Parse(raw); err == nil {
				shown = id
			}
			r := c.Request()
			r.URL.Path = strings.Replace(r.URL.Path, raw, shown, 1)
			r.URL.RawPath = ""
			r.RequestURI = r.URL.RequestURI()
		}
		return next(c)
	}
}

// accountParam returns the {account} path parameter, decoded: echo routes on
// the escaped path (and leaves parameters escaped) only when the request's
// escaping differs from the default, as for a token holding a '/'.
func accountParam(c echo.Context) string {
	raw := c.Param("account")
	if c.Request().URL.RawPath == "" {
		return raw
	}
	if p, err := url.PathUnescape(raw); err == nil {
		return p
	}
	return raw
}

// accountKey keeps the decoded {account} parameter once redactPath has
// rewritten the path.
const accountKey = "sdevents.quota.account"

// parseAccount resolves the {account} path parameter: an account id or
// token:<token>.
func parseAccount(c echo.Context) (string, error) {
	raw, ok := c.Get(accountKey).(string)
	if !ok {
		raw = accountParam(c)
	}
	return account.Parse(raw)
}

// requireToken refuses a request without the admin bearer token (token:
// constant-time comparison, 429 for a client address that guessed too
// often). The checker is made once, by the caller: echo builds a route's
// middleware chain again on every request.
func requireToken(token *admintoken.Checker) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			got, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
			err := admintoken.ErrWrong // no bearer token: not a guess, not counted
			if ok {
				err = token.Check(c.Response(), c.Request(), strings.TrimSpace(got))
			}
			if err != nil {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="sdevents admin"`)
				return err
			}
			return next(c)
		}
	}
}

// handleGrant serves POST /v1/admin/accounts/{account}/credits.
func (s *Service) handleGrant(c echo.Context) error {
	info := httpserver.Info(c)
	id, err := parseAccount(c)
	if err != nil {
		return err
	}
	info.Account = id
	raw, err := io.ReadAll(io.LimitReader(c.Request().Body, maxGrantBody+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %v", httpserver.ErrBadRequest, err)
	}
	if len(raw) > maxGrantBody {
		return fmt.Errorf("%w: limit %d bytes", httpserver.ErrTooLarge, maxGrantBody)
	}
	req, err := parseGrant(raw)
	if err != nil {
		return fmt.Errorf("%w: want {\"credits\": N, \"id\": \"optional\"}: %v", httpserver.ErrBadRequest, err)
	}
	n := *req.Credits
	ctx, cancel := context.WithTimeout(c.Request().Context(), adminTimeout)
	defer cancel()
	start := time.Now()
	var balance, reserved int64 // after the grant
	d, err := s.execute(ctx, id, func(a *ledger.Account, now time.Time) ledger.Decision {
		d := a.Grant(req.ID, n, now)
		balance, reserved = a.Balance, a.Reserved
		if len(d.Events) > 0 {
			balance, reserved = d.Events[0].Balance, d.Events[0].Reserved
		}
		return d
	})
	s.metrics.observe("grant", start, d.Answer.Success, err)
	if err != nil {
		return fmt.Errorf("%w: grant not stored: %v", httpserver.ErrUnavailable, err)
	}
	if !d.Answer.Success {
		info.Outcome = "refused"
		if errors.Is(d.Answer.Err, ledger.ErrInsufficientCredits) {
			return fmt.Errorf("%w: %s", httpserver.ErrConflict, d.Answer.ErrMessage)
		}
		return fmt.Errorf("%w: %s", httpserver.ErrBadRequest, d.Answer.ErrMessage)
	}
	info.Outcome = "granted"
	if d.Repeat {
		info.Outcome = "repeat"
	}
	return c.JSON(http.StatusOK, GrantAnswer{Success: true, Account: id, Credits: n, ID: req.ID,
		Balance: balance, Reserved: reserved, Repeat: d.Repeat})
}

// handleAccount serves GET /v1/admin/accounts/{account}.
func (s *Service) handleAccount(c echo.Context) error {
	id, err := parseAccount(c)
	if err != nil {
		return err
	}
	httpserver.Info(c).Account = id
	ctx, cancel := context.WithTimeout(c.Request().Context(), adminTimeout)
	defer cancel()
	v, err := s.View(ctx, id)
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
	}
	return c.JSON(http.StatusOK, v)
}

// View returns the current state of account id, caught up with the stream.
func (s *Service) View(ctx context.Context, id string) (AccountView, error) {
	e, err := s.lock(ctx, id)
	if err != nil {
		return AccountView{}, err
	}
	defer s.unlock(e)
	if _, err := s.sync(ctx, e); err != nil {
		return AccountView{}, err
	}
	a := e.acct
	v := AccountView{Account: id, Balance: a.Balance, Reserved: a.Reserved, Granted: a.Granted, Committed: a.Committed,
		Reservations: []OpenReservation{}, Ledger: slices.Clone(e.recent)}
	for inv, r := range a.Open {
		v.Reservations = append(v.Reservations, OpenReservation{InvokeID: inv, Reservation: r})
	}
	slices.SortFunc(v.Reservations, func(x, y OpenReservation) int { return x.ExpiresAt.Compare(y.ExpiresAt) })
	if v.Ledger == nil {
		v.Ledger = []StoredEvent{}
	}
	return v, nil
}

// parseGrant reads a grant request body strictly: one JSON object in UTF-8,
// with nothing but white space after it, holding "credits" (an integer,
// required) and "id" (a string, optional), each at most once, spelled
// exactly so. encoding/json alone would take the last of two "credits",
// match "Credits" or "CREDITS", and ignore what follows the object: a body
// an operator's tool and this API could read differently.
func parseGrant(raw []byte) (GrantRequest, error) {
	var req GrantRequest
	if !utf8.Valid(raw) {
		return req, errors.New("the body is not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return req, errors.New("the body is not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return req, fmt.Errorf("malformed object: %v", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return req, fmt.Errorf("key %s given twice", clipValue(key))
		}
		seen[key] = true
		if tok, err = dec.Token(); err != nil {
			return req, fmt.Errorf("malformed object: %v", err)
		}
		switch key {
		case "credits":
			num, ok := tok.(json.Number)
			n, err := strconv.ParseInt(string(num), 10, 64)
			if !ok || err != nil {
				return req, fmt.Errorf("credits is %s, not an integer", clipValue(tok))
			}
			req.Credits = &n
		case "id":
			id, ok := tok.(string)
			if !ok {
				return req, fmt.Errorf("id is %s, not a string", clipValue(tok))
			}
			req.ID = id
		default:
			return req, fmt.Errorf("unknown key %s (keys are credits and id, in lower case)", clipValue(key))
		}
	}
	if _, err := dec.Token(); err != nil {
		return req, fmt.Errorf("malformed object: %v", err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err == nil {
			return req, fmt.Errorf("data after the object (%s)", clipValue(tok))
		}
		return req, errors.New("data after the object")
	}
	if req.Credits == nil {
		return req, errors.New("credits is required")
	}
	return req, nil
}

// clipValue shows a JSON token of a request in an error, shortened.
func clipValue(tok any) string {
	var s string
	switch v := tok.(type) {
	case string:
		s = v
	case json.Delim:
		s = string(v)
	default:
		s = fmt.Sprint(v)
	}
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return strconv.Quote(s)
}
