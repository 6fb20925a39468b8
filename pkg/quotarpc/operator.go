package quotarpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MaxOperatorRequest bounds the JSON of a GrantRequest or AccountRequest, as
// the operator API bounds a grant body: a replica refuses a larger one with
// ErrInvalid, unread.
const MaxOperatorRequest = 4 << 10

// Errors of the operator requests, as a Reply carries them (Code). The
// operator API and the console answer them with 400, 409 and 503.
var (
	// ErrInvalid: the request breaks a rule — not JSON, an invalid account,
	// zero or out-of-range credits, a grant id already used for other
	// credits. Nothing changed; do not send it again unchanged.
	ErrInvalid = errors.New("invalid quota request")
	// ErrInsufficientCredits: a removal of more credits than the account's
	// balance (credits held by open reservations cannot be removed).
	// Nothing changed; remove less.
	ErrInsufficientCredits = errors.New("insufficient credits")
	// ErrUnavailable: no quota replica answered in time, or the ledger could
	// not be read or written. A grant may have been stored or not: send it
	// again with the same id, which applies it once.
	ErrUnavailable = errors.New("quota unavailable")
)

// codes name the sentinels on the wire.
var codes = []struct {
	code string
	err  error
}{
	{"invalid", ErrInvalid},
	{"insufficient_credits", ErrInsufficientCredits},
	{"unavailable", ErrUnavailable},
}

// GrantRequest, on SubjectGrant, adds Credits to Account; negative Credits
// remove them. The reply's result is a GrantAnswer.
type GrantRequest struct {
	// Account is an account id (package account), never a token.
	Account string `json:"account"`
	Credits int64  `json:"credits"`
	// ID makes the grant idempotent: a repeat with the same id and credits
	// changes nothing.
	ID string `json:"id,omitempty"`
}

// GrantAnswer is the account's state after a grant, and the body of the
// operator API's answer to one (CONTRACT §7).
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

// AccountRequest, on SubjectAccount, asks for the state of Account (an
// account id), caught up with the QUOTA stream. The reply's result is an
// AccountState.
type AccountRequest struct {
	Account string `json:"account"`
}

// AccountState is an account's balances and open reservations, oldest
// expiry first.
type AccountState struct {
	Account      string        `json:"account"`
	Balance      int64         `json:"balance"`
	Reserved     int64         `json:"reserved"`
	Granted      int64         `json:"granted"`
	Committed    int64         `json:"committed"`
	Reservations []Reservation `json:"reservations"`
}

// Reservation is one open reservation of an account.
type Reservation struct {
	InvokeID   string    `json:"invoke_id"`
	Credits    int64     `json:"credits"`
	ReservedAt time.Time `json:"reserved_at"`
	// ExpiresAt is zero only for a reservation stored without an expiry.
	ExpiresAt time.Time `json:"expires_at"`
	// Requests are the decide requests told the reservation is held, less
	// those abandoned since; Withdrawn those abandoned before they were
	// decided. Pinned is set on a reservation no abandonment releases.
	Requests  []string `json:"requests,omitempty"`
	Withdrawn []string `json:"withdrawn,omitempty"`
	Pinned    bool     `json:"pinned,omitempty"`
}

// Reply answers an operator request: Result on success; otherwise Error,
// the failure's text, and Code, which names its sentinel. Build it with
// NewReply, read it with Decode.
type Reply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Code   string          `json:"code,omitempty"`
}

// NewReply makes the reply to an operator request: result, encoded, when
// err is nil; otherwise err's text with the code of the sentinel above that
// it wraps (none for any other error).
func NewReply(result any, err error) Reply {
	if err == nil {
		raw, mErr := json.Marshal(result)
		if mErr == nil {
			return Reply{Result: raw}
		}
		err = fmt.Errorf("encode result: %w", mErr)
	}
	r := Reply{Error: err.Error()}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			r.Code = c.code
			break
		}
	}
	return r
}

// Decode decodes r's result into out, or returns the error r carries: with
// the replica's text, wrapping the sentinel its code names (a plain error
// for an unknown code).
func (r Reply) Decode(out any) error {
	if r.Error != "" || r.Code != "" {
		for _, c := range codes {
			if c.code == r.Code {
				return &replyError{msg: r.Error, sentinel: c.err}
			}
		}
		return errors.New(r.Error)
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("quota reply: %w", err)
	}
	return nil
}

// replyError is an error received in a Reply.
type replyError struct {
	msg      string
	sentinel error
}

func (e *replyError) Error() string {
	if e.msg == "" {
		return e.sentinel.Error()
	}
	return e.msg
}
func (e *replyError) Unwrap() error { return e.sentinel }
