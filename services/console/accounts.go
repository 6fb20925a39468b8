package console

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/httpserver"
	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// Page sizes and scan bounds of the accounts pages.
const (
	accountsPage = 50
	// accountsScan bounds the QUOTA messages read for one page of accounts.
	accountsScan = 4096
	ledgerPage   = 50
	// ledgerSpan bounds the QUOTA sequences searched for one ledger page.
	ledgerSpan = 1 << 22
)

// AccountRow is one account of the accounts list: its latest ledger event.
type AccountRow struct {
	Account  string
	Balance  int64
	Reserved int64
	LastType string
	At       time.Time
	Seq      uint64
}

type accountsPageData struct {
	Rows    []AccountRow
	Next    uint64 // before= of the next page; 0 = none
	Partial bool   // the scan bound was hit before a full page
	GrantID string
}

// handleAccounts serves GET /console/accounts?before=<seq>: the accounts
// with the most recent ledger activity first. It reads QUOTA backwards from
// before: the first message met of a subject is the account's latest, with
// its balance and reservations after it (CONTRACT §6). An account whose
// latest message is at or above before was on a newer page.
func (s *Service) handleAccounts(c echo.Context) error {
	before, err := seqParam(c, "before")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	d := accountsPageData{GrantID: newGrantID()}
	first, last, err := s.reader.Bounds(ctx, contract.StreamQuota)
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
	}
	hi := last
	if before > 0 {
		hi = min(before-1, last)
	}
	seen := map[string]bool{}
	var scanned uint64
	window := uint64(accountsPage)
scan:
	for last > 0 && hi >= first && hi > 0 && scanned < accountsScan {
		lo := first
		if hi-first+1 > window {
			lo = hi - window + 1
		}
		msgs, err := readRange(ctx, s.reader, contract.StreamQuota, contract.SubjectQuota+">", lo, hi)
		if err != nil {
			return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
		}
		scanned += hi - lo + 1
		for i := len(msgs) - 1; i >= 0; i-- {
			m := msgs[i]
			hi = m.Seq - 1
			if seen[m.Subject] {
				continue
			}
			seen[m.Subject] = true
			if before > 0 {
				latest, err := s.reader.LastBySubject(ctx, contract.StreamQuota, m.Subject)
				if err != nil && !errors.Is(err, ErrNoMsg) {
					return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
				}
				if err == nil && latest.Seq >= before {
					continue
				}
			}
			var ev contract.QuotaEvent
			_ = json.Unmarshal(m.Data, &ev)
			d.Rows = append(d.Rows, AccountRow{Account: strings.TrimPrefix(m.Subject, contract.SubjectQuota), Balance: ev.Balance,
				Reserved: ev.Reserved, LastType: string(ev.Type), At: ev.At, Seq: m.Seq})
			if len(d.Rows) == accountsPage {
				break scan
			}
		}
		hi = lo - 1
		window = min(window*4, 1024)
	}
	if hi >= first && hi > 0 {
		d.Next = hi + 1
		d.Partial = len(d.Rows) < accountsPage
	}
	return s.render(c, http.StatusOK, "accounts", page{Title: "Accounts", Active: "accounts", CSRF: csrfOf(c), LoggedIn: true, Data: d})
}

type accountPageData struct {
	View    quotarpc.AccountState
	Ledger  []ledgerRow
	Next    uint64
	Granted string
	Repeat  bool
	GrantID string
	Before  uint64
}

type ledgerRow struct {
	Seq uint64
	Ev  contract.QuotaEvent
}

// handleAccount serves GET /console/accounts/{account}: balance, open
// reservations (asked of the quota service, whose replicas fold the account's
// ledger) and the ledger, newest first, paged with before=<seq>.
func (s *Service) handleAccount(c echo.Context) error {
	id := c.Param("account")
	if !account.Valid(id) {
		// The value is not echoed: it may be a token typed in the wrong place,
		// and errors reach the request log.
		return fmt.Errorf("%w: not an account id (a_<26 base32 characters>, or _); open an account by token with the form", httpserver.ErrBadRequest)
	}
	httpserver.Info(c).Account = id
	before, err := seqParam(c, "before")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 10*time.Second)
	defer cancel()
	if _, err := s.reader.LastBySubject(ctx, contract.StreamQuota, contract.SubjectQuota+id); errors.Is(err, ErrNoMsg) {
		return fmt.Errorf("%w: unknown account %s: it has no ledger events", httpserver.ErrNotFound, id)
	} else if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
	}
	v, err := s.quota.Account(ctx, id)
	if err != nil {
		return err
	}
	msgs, next, err := backward(ctx, s.reader, contract.StreamQuota, contract.SubjectQuota+id, before, ledgerPage, ledgerSpan)
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrUnavailable, err)
	}
	d := accountPageData{View: v, Next: next, GrantID: newGrantID(), Before: before}
	for _, m := range msgs {
		var ev contract.QuotaEvent
		_ = json.Unmarshal(m.Data, &ev)
		d.Ledger = append(d.Ledger, ledgerRow{Seq: m.Seq, Ev: ev})
	}
	if g := c.QueryParam("granted"); g != "" {
		if _, err := strconv.ParseInt(g, 10, 64); err == nil {
			d.Granted = g
			d.Repeat = c.QueryParam("repeat") == "1"
		}
	}
	return s.render(c, http.StatusOK, "account", page{Title: "Account " + id, Active: "accounts", CSRF: csrfOf(c), LoggedIn: true, Data: d})
}

// handleFind serves POST /console/accounts/find: it resolves an account id
// or token:<token> (posted, so that a token never lands in a URL) and
// redirects to the account's page.
func (s *Service) handleFind(c echo.Context) error {
	if err := readForm(c); err != nil {
		return err
	}
	id, err := account.Parse(strings.TrimSpace(field(c, "account")))
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrBadRequest, err)
	}
	return c.Redirect(http.StatusSeeOther, "/console/accounts/"+url.PathEscape(id))
}

// handleGrant serves POST /console/accounts/grant (form fields account,
// credits, id): it grants through the quota service, whose rules are the
// admin API's: an integer number of credits, not zero, negative removes; an
// optional idempotency id (the form proposes a fresh one, so a form posted
// twice grants once). The quota's refusals wrap the quotarpc sentinels,
// answered 400, 409 and 503.
func (s *Service) handleGrant(c echo.Context) error {
	if err := readForm(c); err != nil {
		return err
	}
	raw := strings.TrimSpace(field(c, "account"))
	id, err := account.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", httpserver.ErrBadRequest, err)
	}
	httpserver.Info(c).Account = id
	credits := strings.TrimSpace(field(c, "credits"))
	n, err := strconv.ParseInt(credits, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: credits %q: want an integer", httpserver.ErrBadRequest, credits)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 10*time.Second)
	defer cancel()
	ans, err := s.quota.Grant(ctx, quotarpc.GrantRequest{Account: id, Credits: n, ID: strings.TrimSpace(field(c, "id"))})
	if err != nil {
		return err
	}
	httpserver.Info(c).Outcome = "granted"
	q := url.Values{"granted": {strconv.FormatInt(ans.Credits, 10)}}
	if ans.Repeat {
		httpserver.Info(c).Outcome = "repeat"
		q.Set("repeat", "1")
	}
	return c.Redirect(http.StatusSeeOther, "/console/accounts/"+url.PathEscape(id)+"?"+q.Encode())
}

// newGrantID proposes an idempotency id for a grant form.
func newGrantID() string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return "console-" + b64.EncodeToString(b)
}

// seqParam reads an optional stream sequence query parameter (0 when
// absent).
func seqParam(c echo.Context, name string) (uint64, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q: want a sequence number", httpserver.ErrBadRequest, name, v)
	}
	return n, nil
}
