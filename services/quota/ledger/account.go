package ledger

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// ErrAlreadyApplied is returned by Account.Apply for a stream sequence at or
// below the last one applied; the event is skipped. Callers ignore it: it is a
// redelivery of an event the state already holds.
var ErrAlreadyApplied = errors.New("event already applied")

// ErrInconsistent is returned (wrapped) by Account.Apply for an event that no
// decision of this package could have produced in that state: a transition of
// an unknown or finished reservation, a repeated invokeId or grant id, an
// overdraft, an event of another account, an unknown type. The event has been
// folded as far as it can be (see Apply); callers report it and go on.
var ErrInconsistent = errors.New("inconsistent ledger event")

// ErrMismatch is returned (wrapped) by Account.Check when the balance or
// reserved amount stored in an event differs from the fold. The replay tool
// reports it.
var ErrMismatch = errors.New("stored balance differs from the fold")

// Reservation is an open reservation: credits held for one invokeId.
type Reservation struct {
	Credits    int64     `json:"credits"`
	ReservedAt time.Time `json:"reserved_at"`
	// ExpiresAt is when the reservation stops being committable; zero only for
	// a reserved event written without expires_at, which never expires.
	ExpiresAt time.Time `json:"expires_at"`
}

// expired reports whether the reservation is past its expiry at now: from
// ExpiresAt on, inclusive.
func (r Reservation) expired(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// Outcome is how a finished invokeId ended: TypeCommitted, TypeReleased,
// TypeExpired or TypeDenied, with its credits and, for a denial, the reason
// the platform was told.
type Outcome struct {
	Type    EventType `json:"type"`
	Credits int64     `json:"credits"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Account is the state of one account: the fold of its QUOTA events. The zero
// value is an empty account that takes its ID from the first event applied;
// NewAccount names it up front, which decisions need to fill Event.Account.
//
// An Account is not safe for concurrent use: the adapter guards it, applies
// events in stream order and hands decisions a consistent view (Clone).
//
// Finished invokeIds and grant ids are kept for the life of the account so that
// repeats stay idempotent; they cost a few dozen bytes each.
type Account struct {
	// ID is the account id (CONTRACT §4).
	ID string
	// Balance is what the account can still reserve:
	// Granted − Committed − Reserved. Decisions keep it ≥ 0; only an
	// inconsistent stream can make it negative.
	Balance int64
	// Reserved is the sum of the open reservations.
	Reserved int64
	// Granted is the net sum of all grants.
	Granted int64
	// Committed is the sum of all charges.
	Committed int64
	// Open holds the open reservations by invokeId.
	Open map[string]Reservation
	// Finished holds every invokeId that was committed, released, expired or
	// denied.
	Finished map[string]Outcome
	// Grants holds the credits of every grant applied with an id, by id.
	Grants map[string]int64
	// Seq is the stream sequence of the last event applied; 0 before any.
	Seq uint64
}

// NewAccount returns the empty account id.
func NewAccount(id string) *Account {
	return &Account{ID: id}
}

// Clone returns a deep copy of a.
func (a *Account) Clone() *Account {
	c := *a
	c.Open = maps.Clone(a.Open)
	c.Finished = maps.Clone(a.Finished)
	c.Grants = maps.Clone(a.Grants)
	return &c
}

// Due returns the invokeIds of the open reservations that are expired at now,
// sorted, for a sweeper that calls Expire on each.
func (a *Account) Due(now time.Time) []string {
	var ids []string
	for id, r := range a.Open {
		if r.expired(now) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// known reports whether invokeID was ever reserved or denied.
func (a *Account) known(invokeID string) bool {
	_, open := a.Open[invokeID]
	_, done := a.Finished[invokeID]
	return open || done
}

func (a *Account) finish(invokeID string, o Outcome) {
	if a.Finished == nil {
		a.Finished = make(map[string]Outcome)
	}
	a.Finished[invokeID] = o
}

// Apply folds event e, stored at stream sequence seq, into a.
//
// A seq at or below a.Seq returns ErrAlreadyApplied and changes nothing.
// Otherwise a.Seq becomes seq, whatever the event holds, so that a replica
// never gets stuck on a bad event, and the event is folded by these rules:
//
//   - granted adds Credits to Granted and Balance and records ID; a grant id
//     already applied is not folded again;
//   - reserved opens a reservation of Credits; an invokeId already known is
//     not folded again; an overdraft is folded (Balance goes negative);
//   - committed, released and expired close the open reservation of InvokeID
//     with the reservation's own credits (committed adds them to Committed,
//     the others give them back to Balance); for an invokeId that is not open
//     they only record the outcome, if the invokeId has none yet, so that later
//     commands are answered as finished;
//   - denied records the refusal unless the invokeId is already known.
//
// Everything that does not fit returns an error wrapping ErrInconsistent that
// describes it; the stored Balance and Reserved are not used (see Check).
func (a *Account) Apply(e Event, seq uint64) error {
	if seq <= a.Seq {
		return fmt.Errorf("%w: sequence %d, last applied %d", ErrAlreadyApplied, seq, a.Seq)
	}
	a.Seq = seq
	if a.ID == "" {
		a.ID = e.Account
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: seq %d %s %q: %s", ErrInconsistent, seq, e.Type, e.InvokeID+e.ID, fmt.Sprintf(format, args...))
	}
	if e.Account != a.ID {
		return bad("event of account %q in the ledger of %q, skipped", e.Account, a.ID)
	}
	switch e.Type {
	case TypeGranted:
		if e.ID != "" {
			if _, dup := a.Grants[e.ID]; dup {
				return bad("grant id already applied, skipped")
			}
			if a.Grants == nil {
				a.Grants = make(map[string]int64)
			}
			a.Grants[e.ID] = e.Credits
		}
		a.Granted += e.Credits
		a.Balance += e.Credits
		if e.Credits == 0 {
			return bad("grant of zero credits")
		}
		if a.Balance < 0 {
			return bad("balance below zero: %d", a.Balance)
		}
		return nil

	case TypeReserved:
		switch {
		case e.InvokeID == "":
			return bad("reservation without invoke_id, skipped")
		case e.Credits <= 0:
			return bad("reservation of %d credits, skipped", e.Credits)
		case a.known(e.InvokeID):
			return bad("invoke_id already reserved or denied, skipped")
		}
		if a.Open == nil {
			a.Open = make(map[string]Reservation)
		}
		a.Open[e.InvokeID] = Reservation{Credits: e.Credits, ReservedAt: e.At, ExpiresAt: e.ExpiresAt}
		a.Reserved += e.Credits
		a.Balance -= e.Credits
		switch {
		case a.Balance < 0:
			return bad("overdraft: balance %d", a.Balance)
		case e.ExpiresAt.IsZero():
			return bad("reservation without expires_at never expires")
		}
		return nil

	case TypeCommitted, TypeReleased, TypeExpired:
		r, open := a.Open[e.InvokeID]
		if !open {
			if prev, done := a.Finished[e.InvokeID]; done {
				return bad("reservation already %s", prev.Type)
			}
			if e.InvokeID != "" {
				a.finish(e.InvokeID, Outcome{Type: e.Type, Credits: e.Credits, Reason: e.Reason, At: e.At})
			}
			return bad("no open reservation")
		}
		delete(a.Open, e.InvokeID)
		a.Reserved -= r.Credits
		if e.Type == TypeCommitted {
			a.Committed += r.Credits
		} else {
			a.Balance += r.Credits
		}
		a.finish(e.InvokeID, Outcome{Type: e.Type, Credits: r.Credits, Reason: e.Reason, At: e.At})
		if e.Credits != r.Credits {
			return bad("%d credits, but the reservation held %d (folded with %d)", e.Credits, r.Credits, r.Credits)
		}
		return nil

	case TypeDenied:
		switch {
		case e.InvokeID == "":
			return bad("denial without invoke_id, skipped")
		case a.known(e.InvokeID):
			return bad("invoke_id already reserved or denied, skipped")
		}
		a.finish(e.InvokeID, Outcome{Type: TypeDenied, Credits: e.Credits, Reason: e.Reason, At: e.At})
		return nil

	default:
		return bad("unknown event type, skipped")
	}
}

// Check compares the balance and reserved amount stored in e with a. Call it
// right after a.Apply(e, seq). It returns nil when they agree, or an error
// wrapping ErrMismatch that names both values.
func (a *Account) Check(e Event) error {
	if e.Balance == a.Balance && e.Reserved == a.Reserved {
		return nil
	}
	return fmt.Errorf("%w: account %s seq %d (%s %q): stored balance %d reserved %d, fold balance %d reserved %d",
		ErrMismatch, a.ID, a.Seq, e.Type, e.InvokeID+e.ID, e.Balance, e.Reserved, a.Balance, a.Reserved)
}
