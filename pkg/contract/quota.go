package contract

import "time"

// QuotaType is the type of a QUOTA event; its ce-type is TypeQuota + the
// type.
type QuotaType string

// The QUOTA event types (CONTRACT §6; their rules are docs/quota.md's).
const (
	// QuotaGranted adds Credits to the account (negative credits remove
	// them).
	QuotaGranted QuotaType = "granted"
	// QuotaReserved holds Credits for InvokeID until it is committed,
	// released or expired at ExpiresAt.
	QuotaReserved QuotaType = "reserved"
	// QuotaConfirmed: another request for the open reservation of InvokeID
	// was told it is held. Balances do not change.
	QuotaConfirmed QuotaType = "confirmed"
	// QuotaWithdrawn: a request whose answer was lost no longer holds the
	// reservation of InvokeID. Balances do not change.
	QuotaWithdrawn QuotaType = "withdrawn"
	// QuotaCommitted turns the reservation of InvokeID into a charge.
	QuotaCommitted QuotaType = "committed"
	// QuotaReleased gives the reservation of InvokeID back.
	QuotaReleased QuotaType = "released"
	// QuotaExpired gives back a reservation neither committed nor released
	// before its ExpiresAt.
	QuotaExpired QuotaType = "expired"
	// QuotaDenied records a refused reservation of InvokeID; nothing is
	// held.
	QuotaDenied QuotaType = "denied"
	// QuotaSnapshot carries the fold of the account's earlier events in a
	// state field of the quota service's own (services/quota/ledger.State);
	// it changes nothing.
	QuotaSnapshot QuotaType = "snapshot"
)

// QuotaEvent is the data of an event on SubjectQuota + account, as readers
// decode it: every field of CONTRACT §6 and the optional ones. The quota
// service writes it from its ledger.Event, which has the same fields and
// the snapshot's state.
type QuotaEvent struct {
	Type     QuotaType `json:"type"`
	Account  string    `json:"account"`
	InvokeID string    `json:"invoke_id"`
	Credits  int64     `json:"credits"`
	// Balance is what the account can still reserve after the event:
	// granted − committed − open reservations.
	Balance int64 `json:"balance"`
	// Reserved is the sum of the account's open reservations after the
	// event.
	Reserved int64     `json:"reserved"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	// ID is the operator's idempotency key of a grant.
	ID string `json:"id,omitempty"`
	// ExpiresAt is set on reserved events only.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Request is the synchronous request a reserved, confirmed or withdrawn
	// event, or an abandonment's released or denied event, is about.
	Request string `json:"request,omitempty"`
}
