package ledger

import (
	"errors"
	"fmt"
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
	// ErrAbandoned: a reservation of an invokeId whose answer was lost (the
	// platform was told the credit service was busy, see Abandon). Nothing
	// is reserved; the user starts again with a new request.
	ErrAbandoned = errors.New("request abandoned")
	// ErrInvalidCommand: a command that cannot be decided: empty invokeId,
	// non-positive price or ttl, zero or out-of-range grant, a grant id reused
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
	// Repeat is true when the command had already been decided and Answer is
	// that first decision (Events is then empty).
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

// Reserve answers apiAccessPreInvoke: it holds price credits for invokeID
// until now+ttl with a reserved event, or refuses with a denied event whose
// reason the platform shows when the balance is below price.
//
// A repeat of an invokeId already decided returns the first decision and
// appends nothing: success if it was reserved (even if since committed,
// released or expired), the same refusal if it was denied. An empty invokeID,
// a price outside [1, MaxCredits] or a ttl ≤ 0 is refused with
// ErrInvalidCommand and appends nothing. It does not modify a.
func (a *Account) Reserve(invokeID string, price int64, ttl time.Duration, now time.Time) Decision {
	switch {
	case invokeID == "":
		return Decision{Answer: refuse(fmt.Errorf("%w: reservation without invokeId", ErrInvalidCommand))}
	case price <= 0 || price > MaxCredits:
		return Decision{Answer: refuse(fmt.Errorf("%w: price of %d credits", ErrInvalidCommand, price))}
	case ttl <= 0:
		return Decision{Answer: refuse(fmt.Errorf("%w: reservation ttl %s", ErrInvalidCommand, ttl))}
	}
	if _, open := a.Open[invokeID]; open {
		return Decision{Answer: ok(), Repeat: true}
	}
	if o, done := a.Finished[invokeID]; done {
		switch {
		case o.Type == TypeDenied && o.Credits == 0:
			return Decision{Answer: Answer{ErrMessage: o.Reason, Err: fmt.Errorf("%w: %s", ErrAbandoned, o.Reason)}, Repeat: true}
		case o.Type == TypeDenied:
			return Decision{Answer: Answer{ErrMessage: o.Reason, Err: fmt.Errorf("%w: %s", ErrInsufficientCredits, o.Reason)}, Repeat: true}
		}
		return Decision{Answer: ok(), Repeat: true}
	}
	if a.Balance < price {
		reason := fmt.Sprintf("Not enough credits: this request costs %s and %s.", credits(price), a.balanceText())
		e := a.newEvent(TypeDenied, invokeID, price, now)
		e.Reason = reason
		return Decision{Events: []Event{e}, Answer: Answer{ErrMessage: reason, Err: fmt.Errorf("%w: %s", ErrInsufficientCredits, reason)}}
	}
	e := a.newEvent(TypeReserved, invokeID, price, now)
	e.Balance -= price
	e.Reserved += price
	e.ExpiresAt = now.Add(ttl).UTC()
	return Decision{Events: []Event{e}, Answer: ok()}
}

// Commit answers apiAccessCommit: the open reservation of invokeID becomes a
// charge (a committed event; the balance does not change, the reserved amount
// drops).
//
// A repeat after a successful commit succeeds and appends nothing. Every other
// case is a refusal that appends nothing: an unknown invokeId
// (ErrUnknownReservation), a reservation past its expires_at (ErrExpired,
// whether or not the expired event exists yet), one rolled back or denied
// (ErrFinished). It does not modify a.
func (a *Account) Commit(invokeID string, now time.Time) Decision {
	return a.close(TypeCommitted, invokeID, now)
}

// Rollback answers apiAccessRollback: the open reservation of invokeID is
// released (a released event gives its credits back).
//
// A repeat after a successful rollback succeeds and appends nothing. Every
// other case is a refusal that appends nothing, as for Commit: unknown
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

// Abandon settles an apiAccessPreInvoke whose answer was lost: the platform
// was told the credit service was busy, so it will neither commit nor roll
// back. An open reservation of invokeID is released at once (a released
// event with the abandonment as its reason) instead of holding its credits
// until it expires; an invokeId not decided yet is closed with a denied
// event of zero credits, so that the reservation still on its way is
// refused when it arrives (ErrAbandoned). A finished invokeId succeeds with
// Repeat set and appends nothing, as does the abandonment of an abandoned
// one. Either order of Reserve and Abandon thus ends with nothing held. An
// empty invokeID is ErrInvalidCommand. It does not modify a.
func (a *Account) Abandon(invokeID string, now time.Time) Decision {
	if invokeID == "" {
		return Decision{Answer: refuse(fmt.Errorf("%w: abandonment without invokeId", ErrInvalidCommand))}
	}
	if r, open := a.Open[invokeID]; open {
		e := a.newEvent(TypeReleased, invokeID, r.Credits, now)
		e.Reserved -= r.Credits
		e.Balance += r.Credits
		e.Reason = abandonReason
		return Decision{Events: []Event{e}, Answer: ok()}
	}
	if _, done := a.Finished[invokeID]; done {
		return Decision{Answer: ok(), Repeat: true}
	}
	e := a.newEvent(TypeDenied, invokeID, 0, now)
	e.Reason = abandonReason
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
