// Package quotarpc is the NATS request/reply protocol between the ingress and
// the quota service. The ingress stores a synchronous callback in INGRESS and
// asks the quota service for the platform's answer on SubjectDecide (once it
// is stored, or, for the two checks, while it is); any quota replica in
// QueueGroup answers. When the ingress gives up waiting for an
// apiAccessPreInvoke, it asks for its abandonment on SubjectAbandon. The
// console asks for grants on SubjectGrant and for an account's state on
// SubjectAccount (operator.go); any quota replica in QueueGroup answers
// those too. All payloads are JSON.
//
// Subjects live outside sd.> so that downstream subscribers of the event
// subjects never see RPC traffic.
package quotarpc

import (
	"crypto/rand"
	"encoding/json"
	"time"
)

// Subjects and the queue group of the quota service.
const (
	SubjectDecide  = "sdevents.quota.rpc.decide"
	SubjectGrant   = "sdevents.quota.rpc.grant"
	SubjectAccount = "sdevents.quota.rpc.account"
	SubjectAbandon = "sdevents.quota.rpc.abandon"
	QueueGroup     = "quota"
)

// DecideRequest asks for the answer to one synchronous callback.
type DecideRequest struct {
	Source   string `json:"source"`
	BizType  string `json:"biz_type"`
	Account  string `json:"account"` // "" when the request carried no token
	InvokeID string `json:"invoke_id"`
	APIID    string `json:"api_id"`
	// Body is the callback body as received (the price is read from it).
	Body json.RawMessage `json:"body,omitempty"`
	// RawBody carries a body that is not JSON, verbatim.
	RawBody []byte `json:"raw_body,omitempty"`
	// IngressSeq is the INGRESS sequence of the stored callback, 0 for the
	// checks (sdImgGenControlConfig, sdPreInvoke), which are asked while
	// their callback is being stored. Replays of one callback share it
	// (INGRESS stores them once), so it does not name a request: RequestID
	// does.
	IngressSeq uint64    `json:"ingress_seq"`
	At         time.Time `json:"at"`
	// RequestID names this request, and no other: the ingress gives each
	// synchronous HTTP request it forwards a fresh one (NewRequestID), so a
	// replay of the same callback gets its own. A reservation records the
	// request it answered, and an AbandonRequest names the request whose
	// answer was lost.
	RequestID string `json:"request_id,omitempty"`
}

// NewRequestID returns a fresh request id: 128 random bits, 26 base32
// characters.
func NewRequestID() string { return rand.Text() }

// AbandonRequest, on SubjectAbandon, says that the platform was told the
// credit service was busy for the apiAccessPreInvoke InvokeID of Account
// sent as RequestID: whatever was or will be decided for that request must
// hold nothing, while what another request for the same InvokeID was told
// stands. The answer is an Answer; Success means it is settled.
type AbandonRequest struct {
	Account   string `json:"account"`
	InvokeID  string `json:"invoke_id"`
	RequestID string `json:"request_id"`
}

// BodyBytes returns the callback body.
func (r DecideRequest) BodyBytes() []byte {
	if len(r.Body) > 0 {
		return r.Body
	}
	return r.RawBody
}

// NewDecideRequest fills Body or RawBody from body.
func NewDecideRequest(body []byte) DecideRequest {
	if len(body) > 0 && json.Valid(body) {
		return DecideRequest{Body: json.RawMessage(body)}
	}
	return DecideRequest{RawBody: body}
}

// Answer is the platform's answer in the seed's shape.
type Answer struct {
	Success    bool   `json:"success"`
	ErrMessage string `json:"errMessage,omitempty"`
	Data       *Data  `json:"data,omitempty"`
}

// Data is the data object of sdImgGenControlConfig and sdPreInvoke answers.
type Data struct {
	Message    string `json:"message"`
	ButtonText string `json:"buttonText,omitempty"`
	Disabled   bool   `json:"disabled"`
}
