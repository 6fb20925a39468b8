package ledger

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Sentinel errors carried in Answer.Err. Each refusal's ErrMessage is the
// readable text of the same error.
var (
	// ErrInsufficientCredits: a reservation (or a negative grant) larger than
	// the balance. The platform is refused; the operator must remove less.
	ErrInsufficientCredits = errors.New("not enough credits")
	// ErrUnknownReservation: a commit, rollback or expiry of an invokeId that
	// this account never reserved (nor was denied). Nothing changes.
	ErrUnknownReservation = errors.New("no reservation for this request")
	// ErrExpired: a commit or rollback of a reservation past its expires_at.
	// Its credits are (or will be, by Expire) given back; nothing is charged.
	ErrExpired = errors.New("reservation expired")
	// ErrFinished: a commit or rollback of an invokeId that already ended
	// differently (committed, rolled back, or denied). Nothing changes.
	ErrFinished = errors.New("reservation already finished")
	// ErrNotDue: Expire of an open reservation before its expires_at. The
	// caller retries at Account.Open[invokeID].ExpiresAt.
	ErrNotDue = errors.New("reservation not yet expired")
	// ErrAbandoned: a reservation, commit or rollback of an invokeId whose
	// answer was lost (the platform was told the credit service was busy,
	// see Abandon). Nothing is held; the user starts again with a new
	// request.
	ErrAbandoned = errors.New("request abandoned")
	// ErrConflictingRequest: a reservation repeated under an invokeId that
	// holds (or was charged) another amount: not the same request. Nothing
	// changes; the first reservation stands.
	ErrConflictingRequest = errors.New("conflicting request")
	// ErrInvalidCommand: a command that cannot be decided: empty or
	// over-long invokeId, an abandonment naming no request, non-positive price or ttl, zero or out-of-range grant, a grant id reused
	// with other credits. It points at a bug or an operator mistake.
	ErrInvalidCommand = errors.New("invalid quota command")
)

// MaxCredits bounds a balance and a single grant or price, far below overflow
// and within the integers a JSON double holds exactly.
const MaxCredits int64 = 1_000_000_000_000_000

// Answer is what the platform (or the operator) is told. It marshals to the
// seed's response body: success, errMessage and, for sdImgGenControlConfig and
// sdPreInvoke, data.
type Answer struct {
	Success bool `json:"success"`
	// ErrMessage is empty on success; otherwise a sentence for a person (the
	// platform shows it in a pop-up).
	ErrMessage string `json:"errMessage"`
	// Data is set by ControlConfig and PreCheck only.
	Data *AnswerData `json:"data,omitempty"`
	// Err is the refusal's error, wrapping one of the sentinels; nil on
	// success. It is not part of the JSON.
	Err error `json:"-"`
}

// AnswerData is the data object of sdImgGenControlConfig and sdPreInvoke.
type AnswerData struct {
	// Message states the balance and the request's price.
	Message string `json:"message"`
	// ButtonText is set for sdImgGenControlConfig only.
	ButtonText string `json:"buttonText,omitempty"`
	// Disabled is true when the balance cannot pay for the request.
	Disabled bool `json:"disabled"`
}

// Decision is the outcome of a command: the events to append (none or one)
// and the answer to give once they are stored.
type Decision struct {
	// Events holds at most one event. When it is empty the answer can be given
	// at once; otherwise only after the event is appended, and a failed
	// append (conflict) means deciding again on the caught-up state.
	Events []Event
	Answer Answer
	// Repeat is true when the command had already been decided and Answer
	// follows from that decision's outcome, which later events cannot change
	// (Events is then empty): the adapter need not prove its state current.
	Repeat bool
}

func ok() Answer { return Answer{Success: true} }

func refuse(err error) Answer {
	return Answer{ErrMessage: err.Error(), Err: err}
}

// credits formats n credits for a person.
func credits(n int64) string {
	if n == 1 || n == -1 {
		return fmt.Sprintf("%d credit", n)
	}
	return fmt.Sprintf("%d credits", n)
}

// balanceText states the balance and what is held.
func (a *Account) balanceText() string {
	s := "your balance is " + credits(a.Balance)
	if a.Reserved > 0 {
		s += fmt.Sprintf(" (%s held for generations in progress)", credits(a.Reserved))
	}
	return s
}

// newEvent returns an event of a stamped with now (UTC) and the current
// balances; the caller adjusts Balance and Reserved.
func (a *Account) newEvent(t EventType, invokeID string, n int64, now time.Time) Event {
	return Event{Type: t, Account: a.ID, InvokeID: invokeID, Credits: n,
		Balance: a.Balance, Reserved: a.Reserved, At: now.UTC()}
}

// check answers whether a can pay price, with the readable text of both.
func (a *Account) check(price int64) (message string, disabled bool) {
	switch {
	case price <= 0 || price > MaxCredits:
		return fmt.Sprintf("This request has no valid price; %s.", a.balanceText()), true
	case a.Balance < price:
		return fmt.Sprintf("Not enough credits: this request costs %s and %s.", credits(price), a.balanceText()), true
	default:
		return fmt.Sprintf("This request costs %s; %s.", credits(price), a.balanceText()), false
	}
}

// ControlConfig answers sdImgGenControlConfig for a request of price credits:
// success, with a message stating the balance and the price, the button text,
// and disabled when the balance cannot pay. A price ≤ 0 (no valid price)
// disables the button. It appends nothing and does not modify a.
func (a *Account) ControlConfig(price int64) Decision {
	msg, disabled := a.check(price)
	button := fmt.Sprintf("Generate (%s)", credits(price))
	if disabled {
		button = "Not enough credits"
		if price <= 0 || price > MaxCredits {
			button = "Generate"
		}
	}
	ans := ok()
	ans.Data = &AnswerData{Message: msg, ButtonText: button, Disabled: disabled}
	return Decision{Answer: ans}
}

// PreCheck answers sdPreInvoke for a request of price credits: success, with
// a message and disabled when the balance cannot pay. Nothing is reserved; it
// appends nothing and does not modify a.
func (a *Account) PreCheck(price int64) Decision {
	msg, disabled := a.check(price)
	ans := ok()
	ans.Data = &AnswerData{Message: msg, Disabled: disabled}
	return Decision{Answer: ans}
}

// Reserve answers apiAccessPreInvoke for the decide request named request:
// it holds price credits for invokeID until now+ttl with a reserved event,
// or refuses with a denied event whose reason the platform shows when the
// balance is below price.
//
// A repeat of an invokeId already decided is answered from that decision,
// and success only while the credits are held (docs/quota.md, "Repeats"):
//
//   - open, same price, not expired: success. A request not yet told so is
//     recorded first (a confirmed event), so that the reservation stays held
//     until every request told it is held has been abandoned; a request
//     already told so, or a pinned reservation, appends nothing. A request
//     abandoned before it was decided is refused (ErrAbandoned);
//   - committed, same price: success, nothing appended (the commit that
//     follows is a repeat and succeeds);
//   - open or committed at another price: refused (ErrConflictingRequest);
//   - open but past its expiry, or expired: refused (ErrExpired);
//   - rolled back: refused (ErrFinished);
//   - released or closed in advance by an abandonment: refused
//     (ErrAbandoned);
//   - denied: the same refusal.
//
// Refused repeats append nothing. An empty or over-long invokeID, an empty
// request, a price outside [1, MaxCredits] or a ttl ≤ 0 is refused with
// ErrInvalidCommand and appends nothing. It does not modify a.
func (a *Account) Reserve(invokeID, request string, price int64, ttl time.Duration, now time.Time) Decision {
	if err := validInvokeID(invokeID); err != nil {
		return Decision{Answer: refuse(err)}
	}
	switch {
	case request == "":
		return Decision{Answer: refuse(fmt.Errorf("%w: reservation that names no request", ErrInvalidCommand))}
	case price <= 0 || price > MaxCredits:
		return Decision{Answer: refuse(fmt.Errorf("%w: price of %d credits", ErrInvalidCommand, price))}
	case ttl <= 0:
		return Decision{Answer: refuse(fmt.Errorf("%w: reservation ttl %s", ErrInvalidCommand, ttl))}
	}
	if r, open := a.Open[invokeID]; open {
		switch {
		case r.Credits != price:
			return Decision{Answer: refuse(conflicting(invokeID, r.Credits, price)), Repeat: true}
		case r.expired(now):
			return Decision{Answer: refuse(fmt.Errorf("%w: the reservation of %s for request %q expired at %s; start a new request",
				ErrExpired, credits(r.Credits), invokeID, r.ExpiresAt.UTC().Format(time.RFC3339))), Repeat: true}
		case slices.Contains(r.Withdrawn, request):
			// Abandoned before it was decided: nobody waits for this answer.
			return Decision{Answer: Answer{ErrMessage: abandonReason, Err: fmt.Errorf("%w: %s", ErrAbandoned, abandonReason)}, Repeat: true}
		case r.Pinned || slices.Contains(r.Requests, request):
			// Held, and this request's answer is already counted: an
			// answer that depends on the state, proven current by the
			// adapter.
			return Decision{Answer: ok()}
		}
		e := a.newEvent(TypeConfirmed, invokeID, r.Credits, now)
		e.Request = request
		return Decision{Events: []Event{e}, Answer: ok()}
	}
	if o, done := a.Finished[invokeID]; done {
		return Decision{Answer: a.repeatFinished(invokeID, o, price), Repeat: true}
	}
	if a.Balance < price {
		reason := fmt.Sprintf("Not enough credits: this request costs %s and %s.", credits(price), a.balanceText())
		e := a.newEvent(TypeDenied, invokeID, price, now)
		e.Reason = reason
		e.Request = request
		return Decision{Events: []Event{e}, Answer: Answer{ErrMessage: reason, Err: fmt.Errorf("%w: %s", ErrInsufficientCredits, reason)}}
	}
	e := a.newEvent(TypeReserved, invokeID, price, now)
	e.Balance -= price
	e.Reserved += price
	e.ExpiresAt = now.Add(ttl).UTC()
	e.Request = request
	return Decision{Events: []Event{e}, Answer: ok()}
}

// repeatFinished answers a reserve of price credits for invokeID, which
// finished as o.
func (a *Account) repeatFinished(invokeID string, o Outcome, price int64) Answer {
	switch {
	case o.abandoned():
		return Answer{ErrMessage: o.Reason, Err: fmt.Errorf("%w: %s", ErrAbandoned, o.Reason)}
	case o.Type == TypeDenied:
		return Answer{ErrMessage: o.Reason, Err: fmt.Errorf("%w: %s", ErrInsufficientCredits, o.Reason)}
	case o.Type == TypeCommitted && o.Credits == price:
		return ok()
	case o.Type == TypeCommitted:
		return refuse(conflicting(invokeID, o.Credits, price))
	case o.Type == TypeExpired:
		return refuse(fmt.Errorf("%w: the reservation of %s for request %q expired and was released; start a new request",
			ErrExpired, credits(o.Credits), invokeID))
	default:
		return refuse(fmt.Errorf("%w: request %q was already %s; nothing is held for it, start a new request",
			ErrFinished, invokeID, verbs[o.Type]))
	}
}

// conflicting is the refusal of a reserve of price credits for an invokeId
// that already holds (or was charged) held credits.
func conflicting(invokeID string, held, price int64) error {
	return fmt.Errorf("%w: request %q already holds %s; a request of %s under the same id is refused",
		ErrConflictingRequest, invokeID, credits(held), credits(price))
}

// MaxInvokeID bounds the length of an invokeId, in bytes: it is stored in
// every event of the reservation and in their message ids.
const MaxInvokeID = 256

// validInvokeID refuses an empty or over-long invokeId with
// ErrInvalidCommand.
func validInvokeID(invokeID string) error {
	switch {
	case invokeID == "":
		return fmt.Errorf("%w: request without invokeId", ErrInvalidCommand)
	case len(invokeID) > MaxInvokeID:
		return fmt.Errorf("%w: invokeId of %d bytes, at most %d", ErrInvalidCommand, len(invokeID), MaxInvokeID)
	}
	return nil
}

// Commit answers apiAccessCommit: the open reservation of invokeID becomes a
// charge (a committed event; the balance does not change, the reserved amount
// drops).
//
// A repeat after a successful commit succeeds and appends nothing. Every other
// case is a refusal that appends nothing: an unknown invokeId
// (ErrUnknownReservation), a reservation past its expires_at (ErrExpired,
// whether or not the expired event exists yet), one rolled back or denied
// (ErrFinished), one abandoned (ErrAbandoned). It does not modify a.
func (a *Account) Commit(invokeID string, now time.Time) Decision {
	return a.close(TypeCommitted, invokeID, now)
}

// Rollback answers apiAccessRollback: the open reservation of invokeID is
// released (a released event gives its credits back).
//
// A repeat after a successful rollback succeeds and appends nothing, as
// does the rollback of an abandoned request (nothing is held). Every other
// case is a refusal that appends nothing, as for Commit: unknown
// (ErrUnknownReservation), past its expires_at (ErrExpired; its credits come
// back by expiry), committed or denied (ErrFinished). It does not modify a.
func (a *Account) Rollback(invokeID string, now time.Time) Decision {
	return a.close(TypeReleased, invokeID, now)
}

// verbs names the platform's transitions for messages.
var verbs = map[EventType]string{
	TypeCommitted: "committed",
	TypeReleased:  "rolled back",
	TypeExpired:   "expired",
	TypeDenied:    "refused",
}

// close decides a committed or released event for invokeID.
func (a *Account) close(t EventType, invokeID string, now time.Time) Decision {
	if r, open := a.Open[invokeID]; open {
		if r.expired(now) {
			return Decision{Answer: refuse(fmt.Errorf("%w: the reservation of %s for request %q expired at %s; nothing can be %s",
				ErrExpired, credits(r.Credits), invokeID, r.ExpiresAt.UTC().Format(time.RFC3339), verbs[t]))}
		}
		e := a.newEvent(t, invokeID, r.Credits, now)
		e.Reserved -= r.Credits
		if t == TypeReleased {
			e.Balance += r.Credits
		}
		return Decision{Events: []Event{e}, Answer: ok()}
	}
	o, done := a.Finished[invokeID]
	switch {
	case !done:
		return Decision{Answer: refuse(fmt.Errorf("%w: request %q holds no reservation; nothing can be %s", ErrUnknownReservation, invokeID, verbs[t]))}
	case o.abandoned() && t == TypeReleased:
		// Nothing is held, which is what a rollback asks for.
		return Decision{Answer: ok(), Repeat: true}
	case o.abandoned():
		return Decision{Answer: refuse(fmt.Errorf("%w: the credit service did not answer request %q in time and held nothing for it; nothing can be %s",
			ErrAbandoned, invokeID, verbs[t]))}
	case o.Type == t:
		return Decision{Answer: ok(), Repeat: true}
	case o.Type == TypeExpired:
		return Decision{Answer: refuse(fmt.Errorf("%w: the reservation of %s for request %q expired and was released; nothing can be %s",
			ErrExpired, credits(o.Credits), invokeID, verbs[t]))}
	default:
		return Decision{Answer: refuse(fmt.Errorf("%w: request %q was already %s; it cannot be %s",
			ErrFinished, invokeID, verbs[o.Type], verbs[t]))}
	}
}

// abandonReason is the reason of an abandonment, shown to the platform if
// the same invokeId is reserved again.
const abandonReason = "The credit service did not answer this request in time; nothing was charged. Please start it again."

// Abandon settles the apiAccessPreInvoke decide request named request,
// for invokeID, whose answer was lost: the platform was told the credit
// service was busy, so it will neither commit nor roll back what that
// request reserved. It withdraws exactly that request's answer, nothing
// another request was told it holds:
//
//   - an open reservation held for request alone is released at once (a
//     released event with the abandonment as its reason) instead of
//     holding its credits until it expires;
//   - an open reservation held for other requests too, or not decided for
//     request yet, stays held: a withdrawn event takes request out of it,
//     so that the last abandonment releases it and a late decision of
//     request is refused;
//   - an invokeId not decided yet is closed with a denied event of zero
//     credits, so that the reservation still on its way is refused when it
//     arrives (ErrAbandoned), as is any other request for it;
//   - a pinned reservation, a request withdrawn already (or one that does
//     not fit MaxRequests), and a finished invokeId are left alone: it
//     succeeds with Repeat set and appends nothing.
//
// Either order of Reserve and Abandon thus ends with nothing held for the
// abandoned request. An invalid invokeID or an empty request is
// ErrInvalidCommand. It does not modify a.
func (a *Account) Abandon(invokeID, request string, now time.Time) Decision {
	if err := validInvokeID(invokeID); err != nil {
		return Decision{Answer: refuse(err)}
	}
	if request == "" {
		return Decision{Answer: refuse(fmt.Errorf("%w: abandonment that names no request", ErrInvalidCommand))}
	}
	if r, open := a.Open[invokeID]; open {
		held := slices.Contains(r.Requests, request)
		switch {
		case r.Pinned || slices.Contains(r.Withdrawn, request) || !held && r.full():
			return Decision{Answer: ok(), Repeat: true}
		case held && len(r.Requests) == 1:
			e := a.newEvent(TypeReleased, invokeID, r.Credits, now)
			e.Reserved -= r.Credits
			e.Balance += r.Credits
			e.Reason = abandonReason
			e.Request = request
			return Decision{Events: []Event{e}, Answer: ok()}
		}
		e := a.newEvent(TypeWithdrawn, invokeID, r.Credits, now)
		e.Request = request
		return Decision{Events: []Event{e}, Answer: ok()}
	}
	if _, done := a.Finished[invokeID]; done {
		return Decision{Answer: ok(), Repeat: true}
	}
	e := a.newEvent(TypeDenied, invokeID, 0, now)
	e.Reason = abandonReason
	e.Request = request
	return Decision{Events: []Event{e}, Answer: ok()}
}

// Expire releases the reservation of invokeID with an expired event if it is
// still open and now is at or past its expires_at.
//
// Otherwise it appends nothing: before expires_at it refuses with ErrNotDue
// (retry then); for a finished invokeId it succeeds with Repeat set (nothing
// left to do); for an unknown one it refuses with ErrUnknownReservation (the
// state has not caught up, or the timer is stray). It does not modify a.
func (a *Account) Expire(invokeID string, now time.Time) Decision {
	r, open := a.Open[invokeID]
	if !open {
		if _, done := a.Finished[invokeID]; done {
			return Decision{Answer: ok(), Repeat: true}
		}
		return Decision{Answer: refuse(fmt.Errorf("%w: request %q holds no reservation; nothing can expire", ErrUnknownReservation, invokeID))}
	}
	if !r.expired(now) {
		at := "never"
		if !r.ExpiresAt.IsZero() {
			at = "at " + r.ExpiresAt.UTC().Format(time.RFC3339Nano)
		}
		return Decision{Answer: refuse(fmt.Errorf("%w: request %q expires %s", ErrNotDue, invokeID, at))}
	}
	e := a.newEvent(TypeExpired, invokeID, r.Credits, now)
	e.Reserved -= r.Credits
	e.Balance += r.Credits
	return Decision{Events: []Event{e}, Answer: ok()}
}

// Grant adds credits to the balance with a granted event; negative credits
// remove them.
//
// A removal may take the balance down to zero, never below: one larger than
// the balance (credits held by open reservations cannot be removed) is refused
// with ErrInsufficientCredits and appends nothing, so the operator can retry
// with the amount the message names. With a non-empty id the grant is
// idempotent: a repeat with the same id and credits succeeds with Repeat set
// and appends nothing; the same id with other credits is refused with
// ErrInvalidCommand. A refused grant does not use up its id. Zero credits, or
// a grant that would put |credits| or the balance above MaxCredits, is refused
// with ErrInvalidCommand. It does not modify a.
func (a *Account) Grant(id string, n int64, now time.Time) Decision {
	if id != "" {
		if prev, dup := a.Grants[id]; dup {
			if prev == n {
				return Decision{Answer: ok(), Repeat: true}
			}
			return Decision{Answer: refuse(fmt.Errorf("%w: grant id %q was already used for %s", ErrInvalidCommand, id, credits(prev)))}
		}
	}
	switch {
	case n == 0:
		return Decision{Answer: refuse(fmt.Errorf("%w: grant of zero credits", ErrInvalidCommand))}
	case n > MaxCredits || n < -MaxCredits:
		return Decision{Answer: refuse(fmt.Errorf("%w: grant of %s is out of range", ErrInvalidCommand, credits(n)))}
	case n < 0 && a.Balance+n < 0:
		avail := max(a.Balance, 0)
		msg := fmt.Sprintf("cannot remove %s: only %s can be removed", credits(-n), credits(avail))
		if a.Reserved > 0 {
			msg += fmt.Sprintf("; the %s held by open reservations cannot be removed", credits(a.Reserved))
		}
		return Decision{Answer: refuse(fmt.Errorf("%w: %s", ErrInsufficientCredits, msg))}
	case a.Balance+n > MaxCredits:
		return Decision{Answer: refuse(fmt.Errorf("%w: the balance would exceed %s", ErrInvalidCommand, credits(MaxCredits)))}
	}
	e := a.newEvent(TypeGranted, "", n, now)
	e.ID = id
	e.Balance += n
	return Decision{Events: []Event{e}, Answer: ok()}
}
