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
	"github.com/sdevents/sdevents/pkg/quotarpc"
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

// AccountView answers GET /v1/admin/accounts/{account} (CONTRACT §7): the
// account's state, as a replica answers quotarpc.SubjectAccount, and its
// latest ledger events.
type AccountView struct {
	quotarpc.AccountState
	// Ledger holds the account's latest events (at most 50), oldest first.
	Ledger []StoredEvent `json:"ledger"`
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

// handleGrant serves POST /v1/admin/accounts/{account}/credits: the body
// read strictly (parseGrant), then Grant.
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
	ctx, cancel := context.WithTimeout(c.Request().Context(), adminTimeout)
	defer cancel()
	ans, err := s.Grant(ctx, quotarpc.GrantRequest{Account: id, Credits: *req.Credits, ID: req.ID})
	switch {
	case errors.Is(err, quotarpc.ErrInvalid), errors.Is(err, quotarpc.ErrInsufficientCredits):
		info.Outcome = "refused"
		return err
	case err != nil:
		return err
	case ans.Repeat:
		info.Outcome = "repeat"
	default:
		info.Outcome = "granted"
	}
	return c.JSON(http.StatusOK, ans)
}

// Grant adds req.Credits to the account req.Account (negative credits
// remove them) and returns the account's state once the grant is stored. A
// grant with an id is applied once: a repeat with the same id and credits
// changes nothing and answers Repeat. It blocks while the replica decides
// on the account, until ctx ends. Its error wraps quotarpc.ErrInvalid (an
// invalid account, zero or out-of-range credits, an id used for other
// credits), quotarpc.ErrInsufficientCredits (a removal beyond the balance)
// or quotarpc.ErrUnavailable (not stored before ctx ended: it may be stored
// or not).
func (s *Service) Grant(ctx context.Context, req quotarpc.GrantRequest) (quotarpc.GrantAnswer, error) {
	if !account.Valid(req.Account) {
		return quotarpc.GrantAnswer{}, fmt.Errorf("%w: %w", quotarpc.ErrInvalid, account.ErrInvalid)
	}
	start := time.Now()
	var balance, reserved int64 // after the grant
	d, err := s.execute(ctx, req.Account, func(a *ledger.Account, now time.Time) ledger.Decision {
		d := a.Grant(req.ID, req.Credits, now)
		balance, reserved = a.Balance, a.Reserved
		if len(d.Events) > 0 {
			balance, reserved = d.Events[0].Balance, d.Events[0].Reserved
		}
		return d
	})
	s.metrics.observe("grant", start, d.Answer.Success, err)
	switch {
	case err != nil:
		return quotarpc.GrantAnswer{}, fmt.Errorf("%w: grant not stored: %v", quotarpc.ErrUnavailable, err)
	case errors.Is(d.Answer.Err, ledger.ErrInsufficientCredits):
		return quotarpc.GrantAnswer{}, refusal{quotarpc.ErrInsufficientCredits, d.Answer.Err}
	case !d.Answer.Success:
		return quotarpc.GrantAnswer{}, refusal{quotarpc.ErrInvalid, d.Answer.Err}
	}
	return quotarpc.GrantAnswer{Success: true, Account: req.Account, Credits: req.Credits, ID: req.ID,
		Balance: balance, Reserved: reserved, Repeat: d.Repeat}, nil
}

// refusal is a ledger refusal as an error of the quota protocol: the
// ledger's text, wrapping the quotarpc sentinel callers branch on and the
// ledger's own error.
type refusal struct{ kind, err error }

func (r refusal) Error() string   { return r.err.Error() }
func (r refusal) Unwrap() []error { return []error{r.kind, r.err} }

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
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// View returns the current state of account id, caught up with the stream,
// and its latest events. It blocks while the replica decides on the
// account, until ctx ends. Its error wraps quotarpc.ErrInvalid (id is no
// account id) or quotarpc.ErrUnavailable (the account could not be read).
func (s *Service) View(ctx context.Context, id string) (AccountView, error) {
	if !account.Valid(id) {
		return AccountView{}, fmt.Errorf("%w: %w", quotarpc.ErrInvalid, account.ErrInvalid)
	}
	e, err := s.lock(ctx, id)
	if err != nil {
		return AccountView{}, fmt.Errorf("%w: %v", quotarpc.ErrUnavailable, err)
	}
	defer s.unlock(e)
	if _, err := s.sync(ctx, e); err != nil {
		return AccountView{}, fmt.Errorf("%w: %v", quotarpc.ErrUnavailable, err)
	}
	a := e.acct
	v := AccountView{AccountState: quotarpc.AccountState{Account: id, Balance: a.Balance, Reserved: a.Reserved,
		Granted: a.Granted, Committed: a.Committed, Reservations: []quotarpc.Reservation{}}, Ledger: slices.Clone(e.recent)}
	for inv, r := range a.Open {
		v.Reservations = append(v.Reservations, quotarpc.Reservation{InvokeID: inv, Credits: r.Credits, ReservedAt: r.ReservedAt,
			ExpiresAt: r.ExpiresAt, Requests: slices.Clone(r.Requests), Withdrawn: slices.Clone(r.Withdrawn), Pinned: r.Pinned})
	}
	slices.SortFunc(v.Reservations, func(x, y quotarpc.Reservation) int { return x.ExpiresAt.Compare(y.ExpiresAt) })
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
