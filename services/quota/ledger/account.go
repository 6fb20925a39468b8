package ledger

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
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
// reserved amount stored in an event differs from the fold, and by
// Account.Apply when a snapshot event disagrees with the fold of the events
// before it. The replay tool reports it.
var ErrMismatch = errors.New("stored balance differs from the fold")

// ErrBadSnapshot is returned (wrapped) by FromSnapshot for an event that is
// not a snapshot or whose state does not add up. The caller loads the
// account from its whole history instead.
var ErrBadSnapshot = errors.New("unusable snapshot")

// MinRetention is the shortest time an outcome is remembered (see
// Account.Forget). An invokeId is decided anew only this long after it
// finished: a reserved or denied event for an invokeId that finished less
// than MinRetention before it is inconsistent (a decision taken twice).
const MinRetention = 10 * time.Minute

// Reservation is an open reservation: credits held for one invokeId.
type Reservation struct {
	Credits    int64     `json:"credits"`
	ReservedAt time.Time `json:"reserved_at"`
	// ExpiresAt is when the reservation stops being committable; zero only for
	// a reserved event written without expires_at, which never expires.
	ExpiresAt time.Time `json:"expires_at"`
	// Requests are the decide requests told the reservation is held (the
	// one that made it first), less those abandoned since: the abandonment
	// of the last of them releases it.
	Requests []string `json:"requests,omitempty"`
	// Withdrawn are requests abandoned while the reservation was held for
	// others, before they were decided: a late decision of theirs is
	// refused.
	Withdrawn []string `json:"withdrawn,omitempty"`
	// Pinned is set on a reservation no abandonment releases: one stored
	// before request ids existed, or one that more than MaxRequests
	// requests were told about. Only a commit, a rollback or its expiry
	// ends it.
	Pinned bool `json:"pinned,omitempty"`
}

// MaxRequests bounds the requests a reservation keeps (Requests and
// Withdrawn together): beyond, it is pinned, and repeats append nothing.
const MaxRequests = 8

// full reports whether r keeps MaxRequests requests.
func (r Reservation) full() bool { return len(r.Requests)+len(r.Withdrawn) >= MaxRequests }

// equal reports whether r and o hold the same values.
func (r Reservation) equal(o Reservation) bool {
	return r.Credits == o.Credits && r.ReservedAt.Equal(o.ReservedAt) && r.ExpiresAt.Equal(o.ExpiresAt) &&
		slices.Equal(r.Requests, o.Requests) && slices.Equal(r.Withdrawn, o.Withdrawn) && r.Pinned == o.Pinned
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

// abandoned reports whether the outcome is an abandonment: a release with a
// reason (only Abandon gives one), or a denial of nothing (an abandonment
// before any decision).
func (o Outcome) abandoned() bool {
	return o.Type == TypeReleased && o.Reason != "" || o.Type == TypeDenied && o.Credits == 0
}

func (o Outcome) equal(p Outcome) bool {
	return o.Type == p.Type && o.Credits == p.Credits && o.Reason == p.Reason && o.At.Equal(p.At)
}

// Account is the state of one account: the fold of its QUOTA events. The zero
// value is an empty account that takes its ID from the first event applied;
// NewAccount names it up front, which decisions need to fill Event.Account.
//
// An Account is not safe for concurrent use: the adapter guards it, applies
// events in stream order and hands decisions a consistent view (Clone).
//
// Grant ids are kept for the life of the account so that a repeated grant
// stays idempotent. Finished invokeIds are kept until Forget drops them, once
// no repeat can arrive any more.
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
	// SnapshotSeq is the stream sequence of the latest snapshot event
	// applied or loaded; 0 when there is none.
	SnapshotSeq uint64
	// SinceSnapshot counts the events applied after the latest snapshot (or
	// since the first event): what a load from that snapshot reads.
	SinceSnapshot int
	// ForgottenBefore is the cutoff of the latest Forget.
	ForgottenBefore time.Time
}

// NewAccount returns the empty account id.
func NewAccount(id string) *Account {
	return &Account{ID: id}
}

// Clone returns a deep copy of a.
func (a *Account) Clone() *Account {
	c := *a
	c.Open = cloneOpen(a.Open)
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

// NextExpiry returns the earliest expires_at of the open reservations, or
// the zero time when none expires.
func (a *Account) NextExpiry() time.Time {
	var next time.Time
	for _, r := range a.Open {
		if !r.ExpiresAt.IsZero() && (next.IsZero() || r.ExpiresAt.Before(next)) {
			next = r.ExpiresAt
		}
	}
	return next
}

// Forget drops the outcomes of invokeIds that finished before `before`, and
// returns how many it dropped. A later command for such an invokeId is
// decided as for a new one: call it only with a cutoff older than any
// repeat can be (the adapter keeps outcomes for quota.decided_retention,
// at least MinRetention). Open reservations and grant ids are kept.
func (a *Account) Forget(before time.Time) int {
	n := 0
	for id, o := range a.Finished {
		if o.At.Before(before) {
			delete(a.Finished, id)
			n++
		}
	}
	if before.After(a.ForgottenBefore) {
		a.ForgottenBefore = before
	}
	return n
}

// Snapshot returns a snapshot event of a at now: its balances and, in
// State, everything Apply keeps. It does not modify a; the adapter appends
// it like any event, right after a's last one.
func (a *Account) Snapshot(now time.Time) Event {
	e := a.SnapshotInPlace(now)
	e.State.Open, e.State.Finished, e.State.Grants = cloneOpen(a.Open), maps.Clone(a.Finished), maps.Clone(a.Grants)
	return e
}

// SnapshotInPlace is Snapshot without the copies: the event's State holds
// a's own maps, so it describes a only until a next changes. An adapter that
// keeps the account to itself until the event is encoded saves copying
// every open reservation and outcome.
func (a *Account) SnapshotInPlace(now time.Time) Event {
	e := a.newEvent(TypeSnapshot, "", 0, now)
	e.State = &State{Seq: a.Seq, Granted: a.Granted, Committed: a.Committed,
		Open: a.Open, Finished: a.Finished, Grants: a.Grants, ForgottenBefore: a.ForgottenBefore}
	return e
}

// Snapshotted records that e, a snapshot taken of a (Snapshot or
// SnapshotInPlace) with nothing applied since, is stored at stream sequence
// seq: what Apply does with it, without comparing it with the state it was
// taken from, which it is. It returns an error wrapping ErrAlreadyApplied for
// a seq at or below a.Seq, and one wrapping ErrMismatch for an event that is
// no snapshot of a's current state (another account, or taken before a's
// last event); a is not changed then.
func (a *Account) Snapshotted(e Event, seq uint64) error {
	switch {
	case seq <= a.Seq:
		return fmt.Errorf("%w: sequence %d, last applied %d", ErrAlreadyApplied, seq, a.Seq)
	case e.Type != TypeSnapshot || e.State == nil || e.Account != a.ID || e.State.Seq != a.Seq:
		return fmt.Errorf("%w: account %s at seq %d: not a snapshot of its state", ErrMismatch, a.ID, a.Seq)
	}
	a.Seq, a.SnapshotSeq, a.SinceSnapshot = seq, seq, 0
	return nil
}

// FromSnapshot returns the account that snapshot event e, stored at stream
// sequence seq, describes: what folding every event up to seq gives. It
// returns an error wrapping ErrBadSnapshot when e is not a snapshot, or its
// state does not add up (balance ≠ granted − committed − reserved, reserved
// ≠ the sum of the open reservations, a reservation of no credits, a
// sequence not before seq).
func FromSnapshot(e Event, seq uint64) (*Account, error) {
	bad := func(format string, args ...any) (*Account, error) {
		return nil, fmt.Errorf("%w: seq %d: %s", ErrBadSnapshot, seq, fmt.Sprintf(format, args...))
	}
	s := e.State
	switch {
	case e.Type != TypeSnapshot || s == nil:
		return bad("a %s event, not a snapshot", e.Type)
	case e.Account == "":
		return bad("no account")
	case s.Seq >= seq:
		return bad("state of seq %d", s.Seq)
	}
	var held int64
	for id, r := range s.Open {
		if r.Credits <= 0 || id == "" {
			return bad("reservation %q of %d credits", id, r.Credits)
		}
		held += r.Credits
	}
	if held != e.Reserved || e.Balance != s.Granted-s.Committed-e.Reserved {
		return bad("balance %d reserved %d do not add up (granted %d, committed %d, held %d)",
			e.Balance, e.Reserved, s.Granted, s.Committed, held)
	}
	return &Account{ID: e.Account, Balance: e.Balance, Reserved: e.Reserved, Granted: s.Granted, Committed: s.Committed,
		Open: cloneOpen(s.Open), Finished: maps.Clone(s.Finished), Grants: maps.Clone(s.Grants),
		Seq: seq, SnapshotSeq: seq, ForgottenBefore: s.ForgottenBefore}, nil
}

// agrees reports how snapshot event e differs from a, the fold of the
// events up to sequence prev, or nil. Outcomes are compared where both
// still remember them: from the later of the two Forget cutoffs on.
func (a *Account) agrees(e Event, prev uint64) error {
	s := e.State
	if s == nil {
		return errors.New("snapshot without state")
	}
	var diffs []string
	note := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	if s.Seq != prev {
		note("state of seq %d follows seq %d", s.Seq, prev)
	}
	if e.Balance != a.Balance || e.Reserved != a.Reserved || s.Granted != a.Granted || s.Committed != a.Committed {
		note("balance %d reserved %d granted %d committed %d, fold %d %d %d %d",
			e.Balance, e.Reserved, s.Granted, s.Committed, a.Balance, a.Reserved, a.Granted, a.Committed)
	}
	if !maps.EqualFunc(s.Open, a.Open, Reservation.equal) {
		note("%d open reservations, fold %d, or their terms differ", len(s.Open), len(a.Open))
	}
	if !maps.Equal(s.Grants, a.Grants) {
		note("%d grant ids, fold %d, or their credits differ", len(s.Grants), len(a.Grants))
	}
	cutoff := s.ForgottenBefore
	if a.ForgottenBefore.After(cutoff) {
		cutoff = a.ForgottenBefore
	}
	for _, pair := range [2][2]map[string]Outcome{{s.Finished, a.Finished}, {a.Finished, s.Finished}} {
		for id, o := range pair[0] {
			if o.At.Before(cutoff) {
				continue
			}
			if p, ok := pair[1][id]; !ok || !o.equal(p) {
				note("outcome of %q differs", id)
				break
			}
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return errors.New(strings.Join(diffs, "; "))
}

// decidedRecently reports whether invokeID is open, or finished less than
// MinRetention before at: a reserved or denied event for it then repeats a
// decision.
func (a *Account) decidedRecently(invokeID string, at time.Time) bool {
	if _, open := a.Open[invokeID]; open {
		return true
	}
	o, done := a.Finished[invokeID]
	return done && at.Sub(o.At) < MinRetention
}

// cloneOpen deep-copies open reservations.
func cloneOpen(m map[string]Reservation) map[string]Reservation {
	if m == nil {
		return nil
	}
	c := make(map[string]Reservation, len(m))
	for id, r := range m {
		r.Requests, r.Withdrawn = slices.Clone(r.Requests), slices.Clone(r.Withdrawn)
		c[id] = r
	}
	return c
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
//   - reserved opens a reservation of Credits held for Request (pinned
//     without one); an invokeId open, or finished less than MinRetention
//     before, is not folded again (one finished longer ago starts anew); an
//     overdraft is folded (Balance goes negative);
//   - confirmed adds Request to the requests of the open reservation of
//     InvokeID, or pins it when it keeps MaxRequests already; withdrawn
//     takes Request out of them, or adds it to the withdrawn ones when it is
//     not there (up to MaxRequests);
//   - committed, released and expired close the open reservation of InvokeID
//     with the reservation's own credits (committed adds them to Committed,
//     the others give them back to Balance); for an invokeId that is not open
//     they only record the outcome, if the invokeId has none yet, so that later
//     commands are answered as finished;
//   - denied records the refusal, under the same condition as reserved;
//   - snapshot changes no balance: it is compared with the fold (an error
//     wrapping ErrMismatch names the difference) and becomes SnapshotSeq.
//
// Everything that does not fit returns an error wrapping ErrInconsistent that
// describes it; the stored Balance and Reserved are not used (see Check).
func (a *Account) Apply(e Event, seq uint64) error {
	if seq <= a.Seq {
		return fmt.Errorf("%w: sequence %d, last applied %d", ErrAlreadyApplied, seq, a.Seq)
	}
	prev := a.Seq
	a.Seq = seq
	a.SinceSnapshot++
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
		case a.decidedRecently(e.InvokeID, e.At):
			return bad("invoke_id already reserved or denied, skipped")
		}
		delete(a.Finished, e.InvokeID)
		if a.Open == nil {
			a.Open = make(map[string]Reservation)
		}
		r := Reservation{Credits: e.Credits, ReservedAt: e.At, ExpiresAt: e.ExpiresAt, Pinned: e.Request == ""}
		if e.Request != "" {
			r.Requests = []string{e.Request}
		}
		a.Open[e.InvokeID] = r
		a.Reserved += e.Credits
		a.Balance -= e.Credits
		switch {
		case a.Balance < 0:
			return bad("overdraft: balance %d", a.Balance)
		case e.ExpiresAt.IsZero():
			return bad("reservation without expires_at never expires")
		}
		return nil

	case TypeConfirmed, TypeWithdrawn:
		r, open := a.Open[e.InvokeID]
		switch {
		case !open:
			return bad("no open reservation, skipped")
		case e.Request == "":
			return bad("without request, skipped")
		}
		held := slices.Index(r.Requests, e.Request)
		switch {
		case e.Type == TypeConfirmed && (held >= 0 || slices.Contains(r.Withdrawn, e.Request)):
			return bad("request already known, skipped")
		case e.Type == TypeConfirmed && r.full():
			r.Pinned = true
		case e.Type == TypeConfirmed:
			r.Requests = append(slices.Clip(r.Requests), e.Request)
		case held >= 0:
			r.Requests = slices.Delete(slices.Clone(r.Requests), held, held+1)
		case slices.Contains(r.Withdrawn, e.Request):
			return bad("request already withdrawn, skipped")
		case !r.full():
			r.Withdrawn = append(slices.Clip(r.Withdrawn), e.Request)
		}
		a.Open[e.InvokeID] = r
		if e.Credits != r.Credits {
			return bad("%d credits, but the reservation holds %d", e.Credits, r.Credits)
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
		case a.decidedRecently(e.InvokeID, e.At):
			return bad("invoke_id already reserved or denied, skipped")
		}
		a.finish(e.InvokeID, Outcome{Type: TypeDenied, Credits: e.Credits, Reason: e.Reason, At: e.At})
		return nil

	case TypeSnapshot:
		a.SnapshotSeq, a.SinceSnapshot = seq, 0
		if err := a.agrees(e, prev); err != nil {
			return fmt.Errorf("%w: account %s snapshot at seq %d: %v", ErrMismatch, a.ID, seq, err)
		}
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
