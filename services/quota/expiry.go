package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// Expiry timing.
const (
	expiryTimeout  = 10 * time.Second      // bound of one expiry decision
	expiryRetry    = 2 * time.Second       // redelivery after a failed one, doubling
	expiryRetryMax = time.Minute           // up to this
	expirySlack    = 50 * time.Millisecond // added to a not-yet-due redelivery
	expiryMaxWait  = 365 * 24 * time.Hour  // sanity bound of a redelivery delay

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
// skew between the server and this replica), and after a backoff (2 s,
// doubling, at most 1 min) when the decision could not be stored. A
// malformed timer, and one not handled by the consumer's last delivery
// (max_deliver), is buried: recorded on sd.dead.quota-expiry and
// terminated. Its reservation, if open, is then expired by the sweep of
// overdue reservations (sweepOverdue) or when a replica loads its account.
func (s *Service) onDue(m jetstream.Msg) {
	s.spawn(s.expirySlots, func() {
		ctx, cancel := context.WithTimeout(s.work, expiryTimeout)
		defer cancel()
		var t timer
		if err := json.Unmarshal(m.Data(), &t); err != nil || !account.Valid(t.Account) || t.InvokeID == "" {
			s.bury(ctx, m, "cannot be processed: malformed expiry timer", nil)
			return
		}
		n := deliveries(m)
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
		case err != nil && s.expiryBudget.Last(n):
			s.bury(ctx, m, fmt.Sprintf("expiry failed %d times: %v", n, err), &log)
		case err != nil:
			log.Warn().Err(err).Msg("quota: expiry failed; retrying")
			_ = m.NakWithDelay(min(expiryRetry<<min(n-1, 10), expiryRetryMax))
		case errors.Is(d.Answer.Err, ledger.ErrNotDue) && s.expiryBudget.Last(n):
			s.bury(ctx, m, fmt.Sprintf("not due by this replica's clock after %d deliveries: expires at %s", n, due.UTC().Format(time.RFC3339)), &log)
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

// bury gives up on the timer m: it is recorded on sd.dead.quota-expiry with
// reason and terminated, and logged at error (with the account and invoke
// id of log when known). When the record cannot be stored, m is delivered
// again; after its last delivery the server gives up on it and its
// advisory has it recorded (watchDead).
func (s *Service) bury(ctx context.Context, m jetstream.Msg, reason string, log *zerolog.Logger) {
	l := s.log
	if log != nil {
		l = *log
	}
	if _, err := s.dead.Bury(ctx, m, reason); err != nil {
		l.Error().Err(err).Str("subject", m.Subject()).Str("reason", reason).Msg("quota: expiry timer not buried; retrying")
		_ = m.NakWithDelay(expiryRetry)
		return
	}
	l.Error().Str("subject", m.Subject()).Str("reason", reason).
		Msg("quota: expiry timer buried; the sweep of overdue reservations expires it")
}

// watchDead records the fired timers whose last delivery nobody settled (a
// replica stopped holding it) from the server's max-deliveries advisories
// (deadletter.Recorder.Watch), and logs each. The returned stop ends it.
func (s *Service) watchDead() (stop func(), err error) {
	stop, err = s.dead.Watch(s.nc, []deadletter.Durable{{Stream: contract.StreamQuotaTimers, Name: expiryDurable}}, func(r deadletter.Record, err error) {
		ev := s.log.Error().Str("consumer", r.Consumer).Uint64("seq", r.Sequence).Uint64("deliveries", r.Deliveries).Str("reason", r.Reason)
		if err != nil {
			ev.Err(err).Msg("quota: dead letter not recorded")
			return
		}
		ev.Msg("quota: expiry timer given up; the sweep of overdue reservations expires it")
	})
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	return stop, nil
}

// deliveries is how often m has been delivered, 1 when unknown.
func deliveries(m jetstream.Msg) uint64 {
	if meta, err := m.Metadata(); err == nil && meta.NumDelivered > 0 {
		return meta.NumDelivered
	}
	return 1
}

// watchTimer calls timerFailed when the asynchronous publish of an expiry
// timer fails or its ack does not come within timerAckTimeout. It does not
// block: a timer not acknowledged yet (most are by the time their event is
// stored, which append waits for) is watched in the background until the
// replica stops.
func (s *Service) watchTimer(timer jetstream.PubAckFuture) {
	select {
	case <-timer.Ok():
		return
	default:
	}
	go func() {
		wait := time.NewTimer(timerAckTimeout)
		defer wait.Stop()
		select {
		case <-timer.Ok():
		case err := <-timer.Err():
			s.timerFailed(timer.Msg(), err)
		case <-wait.C:
			s.timerFailed(timer.Msg(), jetstream.ErrAsyncPublishTimeout)
		case <-s.bg.Done():
		}
	}()
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
// retries gave up, a timer buried after its last delivery, a timer stream
// purged). Each such account is expired in the background, once its lock is
// free, like a fired timer; it is held in memory meanwhile, but a sweep is
// no use of it: it does not delay the account's eviction. Each expiry is
// counted in decisions_total{kind="sweep"}. An account not held by any
// replica has its overdue reservations expired when it is loaded (lock).
func (s *Service) sweepOverdue(now time.Time) {
	for _, e := range s.accounts.overdue(now.Add(-overdueGrace)) {
		s.spawn(s.expirySlots, func() {
			ctx, cancel := context.WithTimeout(s.bg, expiryTimeout)
			defer cancel()
			select {
			case e.lock <- struct{}{}:
			case <-ctx.Done():
				s.accounts.letGo(e)
				return
			}
			defer func() {
				<-e.lock
				s.accounts.letGo(e)
			}()
			if e.acct != nil {
				s.expireDue(ctx, e, "sweep")
				e.noteExpiries()
			}
		})
	}
}
