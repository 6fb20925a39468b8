package ledger

import "time"

// EventType is the kind of a QUOTA stream event.
type EventType string

// The QUOTA event types (CONTRACT §6).
const (
	// TypeGranted adds credits (negative credits remove them). Credits is the
	// signed amount.
	TypeGranted EventType = "granted"
	// TypeReserved holds Credits for InvokeID until it is committed, released or
	// expired at ExpiresAt.
	TypeReserved EventType = "reserved"
	// TypeCommitted turns the reservation of InvokeID into a charge. Credits is
	// the reservation's amount.
	TypeCommitted EventType = "committed"
	// TypeReleased gives the reservation of InvokeID back (apiAccessRollback).
	TypeReleased EventType = "released"
	// TypeExpired gives back a reservation that was neither committed nor
	// rolled back before its ExpiresAt.
	TypeExpired EventType = "expired"
	// TypeDenied records a refused reservation of InvokeID so that a repeat of
	// the same request gets the same refusal. Credits is the price asked for;
	// nothing is held.
	TypeDenied EventType = "denied"
)

// Event is one entry of an account's ledger, the JSON data of a message on
// sd.quota.<account>.
//
// The fields of CONTRACT §6 are always present in the JSON. Two fields are
// added, and omitted when empty:
//
//   - id: the operator's idempotency key of a grant;
//   - expires_at: when a reserved event's reservation expires.
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
}
