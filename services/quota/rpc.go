package quota

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// Readable refusals that do not come from the ledger.
const (
	msgNoAccount   = "This request carries no user token, so its credits cannot be checked."
	msgUnavailable = "The credit service could not record this request. Please try again in a moment."
	msgUnsupported = "This request type is not handled by the credit service."
	msgTooLate     = "The credit service received this request too late to answer it; nothing was charged. Please try again."
)

// onDecide answers one request on quotarpc.SubjectDecide, in its own
// goroutine: decisions on different accounts proceed in parallel.
func (s *Service) onDecide(m *nats.Msg) {
	if s.gate != nil {
		s.gate()
	}
	s.spawn(s.slots, func() {
		var req quotarpc.DecideRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			s.log.Warn().Err(err).Msg("quota: undecodable decide request")
			s.respond(m, quotarpc.Answer{ErrMessage: msgUnavailable})
			return
		}
		ctx, cancel := context.WithTimeout(s.work, s.deadline)
		defer cancel()
		s.respond(m, s.Decide(ctx, req))
	})
}

func (s *Service) respond(m *nats.Msg, ans quotarpc.Answer) {
	b, err := json.Marshal(ans)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("quota: reply lost")
	}
}

// Decide answers one synchronous callback (CONTRACT §4) for req.Account:
//
//   - sdImgGenControlConfig: ledger ControlConfig (balance and price, disabled
//     when the balance cannot pay);
//   - sdPreInvoke: ledger PreCheck (no deduction);
//   - apiAccessPreInvoke: ledger Reserve of the request's price;
//   - apiAccessCommit / apiAccessRollback: ledger Commit / Rollback of the
//     reservation of req.InvokeID.
//
// The price is ledger.ParsePrice of the body times quota.price.per_image; a
// body that cannot be priced is a readable refusal that stores nothing (and
// disables the button for the two checks). A request without an account, an
// unknown bizType, a request the ingress received longer than
// ingress.sync_skew ago (held up in a stopped replica: nobody waits for its
// answer), or a decision that cannot be stored before ctx ends is a readable
// refusal too. Decide never returns an error: every failure is an answer the
// platform can show.
func (s *Service) Decide(ctx context.Context, req quotarpc.DecideRequest) quotarpc.Answer {
	start := time.Now()
	check := req.BizType == callback.BizImgGenControlConfig || req.BizType == callback.BizSDPreInvoke
	refuse := func(msg string) quotarpc.Answer {
		ans := quotarpc.Answer{ErrMessage: msg}
		if check {
			ans.Data = &quotarpc.Data{Message: msg, Disabled: true}
		}
		return ans
	}
	if req.Account == "" || !account.Valid(req.Account) {
		s.metrics.observe(kindLabel(req.BizType), start, false, nil)
		return refuse(msgNoAccount)
	}
	if !req.At.IsZero() && s.now().Sub(req.At) > s.maxAge {
		// Held up for longer than the freshness window (a stopped replica):
		// nobody waits for this answer any more, and deciding it now could
		// hold credits for a request whose abandonment is long forgotten.
		s.metrics.observe(kindLabel(req.BizType), start, false, nil)
		return refuse(msgTooLate)
	}
	if req.RequestID == "" {
		// From an ingress that names no requests: this one gets its name
		// here, so that the abandonment this replica may start for it
		// releases exactly what it reserved.
		req.RequestID = quotarpc.NewRequestID()
	}
	price, _, priceErr := ledger.ParsePrice(req.BodyBytes(), s.perImage)
	var cmd command
	switch req.BizType {
	case callback.BizImgGenControlConfig:
		cmd = func(a *ledger.Account, _ time.Time) ledger.Decision { return a.ControlConfig(price) }
	case callback.BizSDPreInvoke:
		cmd = func(a *ledger.Account, _ time.Time) ledger.Decision { return a.PreCheck(price) }
	case callback.BizAPIPreInvoke:
		if priceErr != nil {
			s.metrics.observe(req.BizType, start, false, nil)
			return refuse(sentence(priceErr.Error()))
		}
		cmd = func(a *ledger.Account, now time.Time) ledger.Decision {
			return a.Reserve(req.InvokeID, req.RequestID, price, s.ttl, now)
		}
	case callback.BizAPICommit:
		cmd = func(a *ledger.Account, now time.Time) ledger.Decision { return a.Commit(req.InvokeID, now) }
	case callback.BizAPIRollback:
		cmd = func(a *ledger.Account, now time.Time) ledger.Decision { return a.Rollback(req.InvokeID, now) }
	default:
		s.metrics.observe("other", start, false, nil)
		return refuse(msgUnsupported)
	}
	d, err := s.execute(ctx, req.Account, cmd)
	s.metrics.observe(req.BizType, start, d.Answer.Success, err)
	if err != nil {
		s.log.Warn().Err(err).Str("account", req.Account).Str("invoke_id", req.InvokeID).Str("kind", req.BizType).Msg("quota: no decision")
		if req.BizType == callback.BizAPIPreInvoke {
			// The reservation may be stored without its answer: the
			// platform is refused, so nothing this request reserved may
			// stay held.
			s.abandonLater(req.Account, req.InvokeID, req.RequestID)
		}
		return refuse(msgUnavailable)
	}
	ans := quotarpc.Answer{Success: d.Answer.Success, ErrMessage: sentence(d.Answer.ErrMessage)}
	if data := d.Answer.Data; data != nil {
		ans.Data = &quotarpc.Data{Message: data.Message, ButtonText: data.ButtonText, Disabled: data.Disabled}
		if priceErr != nil {
			ans.Data.Message = sentence(priceErr.Error()) + " " + data.Message
		}
	}
	return ans
}

// kindLabel bounds the metrics' kind label to the synchronous bizTypes.
func kindLabel(bizType string) string {
	if callback.KindOf(bizType) == callback.Sync {
		return bizType
	}
	return "other"
}

// sentence makes an error text read as a sentence: capital first letter and
// a final period.
func sentence(s string) string {
	if s == "" {
		return s
	}
	if c := s[0]; 'a' <= c && c <= 'z' {
		s = string(c-'a'+'A') + s[1:]
	}
	switch s[len(s)-1] {
	case '.', '!', '?':
		return s
	}
	return s + "."
}
