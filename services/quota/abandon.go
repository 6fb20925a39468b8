package quota

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// A reservation whose answer is lost — the quota could not store its
// decision in time, or the ingress gave up waiting and told the platform the
// credit service was busy — would hold its credits until it expires
// (quota.reservation_ttl), since the platform, refused, neither commits nor
// rolls back. It is abandoned instead (ledger Abandon): released at once if
// it was reserved, refused in advance if it was not yet. An abandonment
// names the decide request whose answer was lost (quotarpc RequestID): it
// releases only what that request reserved, never what another request for
// the same invokeId was told it holds. Both sides start an
// abandonment: the quota for its own failures (abandonLater), the ingress for
// its timeouts (a request on quotarpc.SubjectAbandon, onAbandon). A replica
// that does not know abandonments does not subscribe to that subject, so
// during an upgrade the ingress's requests go unanswered: nothing worse than
// the expiry happens.
//
// abandonWindow bounds how long an abandonment is retried; past it (or when
// the process stops), the reservation's expiry remains the backstop.
const abandonWindow = 2 * time.Minute

// abandonAttempt bounds one attempt: background work is not held to the
// platform's answer deadline.
const abandonAttempt = 10 * time.Second

// onAbandon answers one request on quotarpc.SubjectAbandon, in its own
// goroutine.
func (s *Service) onAbandon(m *nats.Msg) {
	if s.gate != nil {
		s.gate()
	}
	s.spawn(s.slots, func() {
		start := time.Now()
		var req quotarpc.AbandonRequest
		if err := json.Unmarshal(m.Data, &req); err != nil || !account.Valid(req.Account) {
			s.metrics.observe("abandon", start, false, nil)
			s.respond(m, quotarpc.Answer{ErrMessage: msgNoAccount})
			return
		}
		ctx, cancel := context.WithTimeout(s.work, s.deadline)
		defer cancel()
		d, err := s.execute(ctx, req.Account, abandon(req.InvokeID, req.RequestID))
		s.metrics.observe("abandon", start, d.Answer.Success, err)
		if err != nil {
			s.respond(m, quotarpc.Answer{ErrMessage: msgUnavailable})
			return
		}
		s.respond(m, quotarpc.Answer{Success: d.Answer.Success, ErrMessage: sentence(d.Answer.ErrMessage)})
	})
}

func abandon(invokeID, request string) command {
	return func(a *ledger.Account, now time.Time) ledger.Decision { return a.Abandon(invokeID, request, now) }
}

// abandonLater abandons what the decide request named request reserved for
// invokeID on account, in the background, retrying with backoff for
// abandonWindow.
func (s *Service) abandonLater(account, invokeID, request string) {
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		ctx, cancel := context.WithTimeout(s.bg, abandonWindow)
		defer cancel()
		for pause := 100 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
			attempt, stop := context.WithTimeout(ctx, abandonAttempt)
			_, err := s.execute(attempt, account, abandon(invokeID, request))
			stop()
			if err == nil {
				s.log.Info().Str("account", account).Str("invoke_id", invokeID).Msg("quota: reservation with a lost answer abandoned")
				return
			}
			select {
			case <-ctx.Done():
				s.log.Warn().Err(err).Str("account", account).Str("invoke_id", invokeID).
					Msg("quota: reservation with a lost answer not abandoned; it expires instead")
				return
			case <-time.After(pause):
			}
		}
	}()
}
