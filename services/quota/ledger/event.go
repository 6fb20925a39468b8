package ledger

import (
	"time"

	"github.com/sdevents/sdevents/pkg/contract"
)

// EventType is the kind of a QUOTA stream event: the contract's QuotaType.
type EventType = contract.QuotaType

// The QUOTA event types (CONTRACT §6), as the ledger uses them.
const (
	// TypeGranted adds credits (negative credits remove them). Credits is the
	// signed amount.
	TypeGranted = contract.QuotaGranted
	// TypeReserved holds Credits for InvokeID until it is committed, released or
	// expired at ExpiresAt. Request names the decide request it answered.
	TypeReserved = contract.QuotaReserved
	// TypeConfirmed records that another request for the open reservation of
	// InvokeID (named by Request) was told it is held: an abandonment
	// releases the reservation only once every request told so has been
	// abandoned. Credits is the reservation's amount; balances do not
	// change.
	TypeConfirmed = contract.QuotaConfirmed
	// TypeWithdrawn records the abandonment of Request while the
	// reservation of InvokeID stays held for other requests: Request no
	// longer holds it, and if it was not decided yet, it is refused when it
	// is. Credits is the reservation's amount; balances do not change.
	TypeWithdrawn = contract.QuotaWithdrawn
	// TypeCommitted turns the reservation of InvokeID into a charge. Credits is
	// the reservation's amount.
	TypeCommitted = contract.QuotaCommitted
	// TypeReleased gives the reservation of InvokeID back: apiAccessRollback,
	// or, with Reason and Request set, the abandonment of the request that
	// made it (Account.Abandon).
	TypeReleased = contract.QuotaReleased
	// TypeExpired gives back a reservation that was neither committed nor
	// rolled back before its ExpiresAt.
	TypeExpired = contract.QuotaExpired
	// TypeDenied records a refused reservation of InvokeID so that a repeat of
	// the same request gets the same refusal. Credits is the price asked for;
	// nothing is held. A denial of zero credits is an abandonment that came
	// before any decision (Request names the abandoned request).
	TypeDenied = contract.QuotaDenied
	// TypeSnapshot carries the fold of every event before it in State, so
	// that a replica loads the account from it and the events after it. It
	// changes nothing: Balance and Reserved are the account's, Credits is 0.
	TypeSnapshot = contract.QuotaSnapshot
)

// Event is one entry of an account's ledger, the JSON data of a message on
// sd.quota.<account>: contract.QuotaEvent's fields, and the state of a
// snapshot.
//
// The fields of CONTRACT §6 are always present in the JSON. These are
// added, and omitted when empty:
//
//   - id: the operator's idempotency key of a grant;
//   - expires_at: when a reserved event's reservation expires;
//   - request: the decide request that made a reservation, was told it is
//     held (confirmed), or was abandoned (withdrawn, and the released or
//     denied event of an abandonment);
//   - state: the fold, on snapshot events.
//
// Times are encoded as RFC 3339 with nanoseconds, in UTC when produced here.
type Event struct {
	Type     EventType `json:"type"`
	Account  string    `json:"account"`
	InvokeID string    `json:"invoke_id"`
	// Credits is the amount the event is about; see the EventType constants.
	Credits int64 `json:"credits"`
	// Balance is what the account can still reserve after the event:
	// granted − committed − open reservations.
	Balance int64 `json:"balance"`
	// Reserved is the sum of the account's open reservations after the event.
	Reserved int64 `json:"reserved"`
	// Reason is the readable cause of a denial, or of a release by
	// Account.Abandon; empty otherwise.
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// ID is the idempotency key of a grant, empty for grants without one and
	// for every other type.
	ID string `json:"id,omitempty"`
	// ExpiresAt is set on reserved events only.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Request is the id of the decide request (quotarpc.DecideRequest) a
	// reserved, confirmed or withdrawn event, or the released or denied
	// event of an abandonment, is about; empty on other events and on
	// events written before request ids existed.
	Request string `json:"request,omitempty"`
	// State is set on snapshot events only.
	State *State `json:"state,omitempty"`
}

// State is the fold an account snapshot carries: everything Account.Apply
// keeps, as of stream sequence Seq (the last event folded). Balance and
// Reserved are the snapshot event's own fields.
type State struct {
	Seq       uint64                 `json:"seq"`
	Granted   int64                  `json:"granted"`
	Committed int64                  `json:"committed"`
	Open      map[string]Reservation `json:"open,omitempty"`
	Finished  map[string]Outcome     `json:"finished,omitempty"`
	Grants    map[string]int64       `json:"grants,omitempty"`
	// ForgottenBefore is the cutoff of the last Account.Forget: outcomes
	// finished before it are not in Finished any more.
	ForgottenBefore time.Time `json:"forgotten_before,omitzero"`
}
