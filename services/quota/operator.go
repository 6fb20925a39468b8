package quota

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/quotarpc"
)

// onGrant answers one request on quotarpc.SubjectGrant (a
// quotarpc.GrantRequest) with a quotarpc.Reply of Grant, in its own
// goroutine.
func (s *Service) onGrant(m *nats.Msg) {
	s.answerOperator(m, func(ctx context.Context) (any, error) {
		var req quotarpc.GrantRequest
		if err := decodeOperator(m.Data, &req); err != nil {
			return nil, err
		}
		return s.Grant(ctx, req)
	})
}

// onAccount answers one request on quotarpc.SubjectAccount (a
// quotarpc.AccountRequest) with a quotarpc.Reply of the account's state
// (View, without the ledger), in its own goroutine.
func (s *Service) onAccount(m *nats.Msg) {
	s.answerOperator(m, func(ctx context.Context) (any, error) {
		var req quotarpc.AccountRequest
		if err := decodeOperator(m.Data, &req); err != nil {
			return nil, err
		}
		v, err := s.View(ctx, req.Account)
		return v.AccountState, err
	})
}

// answerOperator answers m with the reply of call, run in its own goroutine
// among the operator slots (apart from the decisions, so that operators
// cannot hold up the platform's answers) under adminTimeout.
func (s *Service) answerOperator(m *nats.Msg, call func(ctx context.Context) (any, error)) {
	if s.gate != nil {
		s.gate()
	}
	s.spawn(s.operatorSlots, func() {
		ctx, cancel := context.WithTimeout(s.work, adminTimeout)
		defer cancel()
		b, err := json.Marshal(quotarpc.NewReply(call(ctx)))
		if err == nil {
			err = m.Respond(b)
		}
		if err != nil {
			s.log.Warn().Err(err).Str("subject", m.Subject).Msg("quota: reply lost")
		}
	})
}

// decodeOperator decodes an operator request strictly: at most
// quotarpc.MaxOperatorRequest bytes, one JSON object of known fields. Its
// error wraps quotarpc.ErrInvalid.
func decodeOperator(data []byte, v any) error {
	if len(data) > quotarpc.MaxOperatorRequest {
		return fmt.Errorf("%w: request of %d bytes, limit %d", quotarpc.ErrInvalid, len(data), quotarpc.MaxOperatorRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", quotarpc.ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the request", quotarpc.ErrInvalid)
	}
	return nil
}
