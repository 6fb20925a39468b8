package quota

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
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

	// timerAckTimeout bounds the wait for the ack of a timer published
	// asynchronously; past it, the timer is published again.
	timerAckTimeout = 10 * time.Second
	// timerRetryWindow bounds the background retries of one timer.
	timerRetryWindow = time.Minute
	// overdueGrace is how long past its expiry a reservation is left to its
	// timer before the sweep expires it (sweepOverdue).
	overdueGrace = 10 * time.Second
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
	s.spawn(s.expirySlots, func() {
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
		d, err := s.execute(ctx, t.Account, func(a *ledger.Account, now time.Time) ledger.Decision {
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

// timerFailed publishes again, in the background, the schedule m of a
// reservation's expiry timer whose asynchronous publish failed with err (the
// server refused it, its ack did not come within timerAckTimeout, or the
// connection dropped: it may be stored already, and a schedule published
// again replaces itself). It retries with backoff for timerRetryWindow, or
// until the replica stops; past that, the sweep of overdue reservations and
// the expiry on load remain.
func (s *Service) timerFailed(m *nats.Msg, err error) {
	if s.bg.Err() != nil {
		return
	}
	msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header}
	go func() {
		ctx, cancel := context.WithTimeout(s.bg, timerRetryWindow)
		defer cancel()
		for pause := 100 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
			attempt, stop := context.WithTimeout(ctx, timerAckTimeout)
			_, perr := s.js.PublishMsg(attempt, msg)
			stop()
			if perr == nil {
				return
			}
			select {
			case <-ctx.Done():
				s.log.Warn().Err(perr).AnErr("first", err).Str("subject", m.Subject).
					Msg("quota: expiry timer not stored; the sweep of overdue reservations expires it")
				return
			case <-time.After(pause):
			}
		}
	}()
}

// sweepOverdue expires the reservations, in the accounts this replica holds,
// that are more than overdueGrace past their expiry: those whose timer was
// lost (a crash between the event and its timer, a timer refused until its
// retries gave up, a timer stream purged). Each such account is expired in
// the background, once its lock is free, like a fired timer; it is held in
// memory meanwhile. An account not held by any replica has its overdue
// reservations expired when it is loaded (lock).
func (s *Service) sweepOverdue(now time.Time) {
	for _, e := range s.accounts.overdue(now.Add(-overdueGrace)) {
		s.spawn(s.expirySlots, func() {
			ctx, cancel := context.WithTimeout(s.bg, expiryTimeout)
			defer cancel()
			select {
			case e.lock <- struct{}{}:
			case <-ctx.Done():
				s.accounts.release(e, s.now())
				return
			}
			defer s.unlock(e)
			if e.acct != nil {
				s.expireDue(ctx, e)
				e.noteExpiries()
			}
		})
	}
}
