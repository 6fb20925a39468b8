package quota

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// Expiry timing.
const (
	expiryTimeout = 10 * time.Second      // bound of one expiry decision
	expiryRetry   = 2 * time.Second       // redelivery after a failed one
	expirySlack   = 50 * time.Millisecond // added to a not-yet-due redelivery
	expiryMaxWait = 365 * 24 * time.Hour  // sanity bound of a redelivery delay
)

// onDue handles one fired expiry timer from the quota-expiry consumer (any
// replica may get it) in its own goroutine: the account is caught up and its
// reservation expired with an expired event.
//
// The message is acknowledged when the reservation is expired, already
// finished, or unknown (a stray timer: its reservation was never stored); it
// is redelivered at the reservation's expiry when that is still ahead (clock
// skew between the server and this replica), and after expiryRetry when the
// decision could not be stored. A malformed timer is terminated.
func (s *Service) onDue(m jetstream.Msg) {
	s.dispatch(s.expirySlots, func() {
		var t timer
		if err := json.Unmarshal(m.Data(), &t); err != nil || !account.Valid(t.Account) || t.InvokeID == "" {
			s.log.Error().Str("subject", m.Subject()).Msg("quota: malformed expiry timer terminated")
			_ = m.Term()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), expiryTimeout)
		defer cancel()
		start := time.Now()
		var due time.Time
		d, err := s.do(ctx, t.Account, func(a *ledger.Account, now time.Time) ledger.Decision {
			d := a.Expire(t.InvokeID, now)
			due = a.Open[t.InvokeID].ExpiresAt
			return d
		})
		s.metrics.observe("expire", start, d.Answer.Success, err)
		log := s.log.With().Str("account", t.Account).Str("invoke_id", t.InvokeID).Logger()
		switch {
		case err != nil:
			log.Warn().Err(err).Msg("quota: expiry failed; retrying")
			_ = m.NakWithDelay(expiryRetry)
		case errors.Is(d.Answer.Err, ledger.ErrNotDue):
			wait := min(max(time.Until(due), 0)+expirySlack, expiryMaxWait)
			log.Debug().Dur("wait_ms", wait).Msg("quota: expiry timer early")
			_ = m.NakWithDelay(wait)
		default:
			if len(d.Events) > 0 {
				log.Info().Msg("quota: reservation expired")
			}
			_ = m.Ack()
		}
	})
}
