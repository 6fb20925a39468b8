package aggregator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// Poison messages. A message that keeps failing is buried: recorded on
// sd.dead.<consumer> (pkg/deadletter), skipped in its key's state so that
// the key's next messages apply, and terminated. Failing messages are buried
// once they have used a third of their consumer's max_deliver; the rest of
// the budget is for the messages that wait for them (their successors), so
// that those apply once it is skipped instead of being buried in turn. A
// message still waiting for its predecessor at its last delivery is buried
// too, without a skip: its predecessor was never applied. A last delivery
// nobody settles (a replica stopped holding it, or its record could not be
// stored) is recorded from the server's max-deliveries advisory
// (watchDead).

// lastChance reports whether m, if it fails again, is to be buried.
func (s *Service) lastChance(m jetstream.Msg, b deadletter.Budget) bool {
	after := b.Share(1, 3)
	return after > 0 && deliveries(m) >= after
}

// bury gives up on it, whose handling ended with res: it publishes the
// dead-letter record, skips an INGRESS message that failed in its key's
// state, and terminates it. When the record or the skip cannot be stored
// and the server would deliver the message again, it is negatively
// acknowledged instead, and buried on a later delivery. On the last
// delivery a message whose record cannot be stored is negatively
// acknowledged too: the server gives up on it, and its advisory has it
// recorded (watchDead); one recorded whose skip failed is terminated.
func (s *Service) bury(ctx context.Context, it work, res result) {
	n := deliveries(it.msg)
	budget := s.ingressBudget
	if it.due {
		budget = s.dueBudget
	}
	final := budget.Last(n)
	reason := fmt.Sprintf("failed %d times: %v", n, res.err)
	if res.out == nakWait {
		reason = fmt.Sprintf("waited %d times for the earlier messages of its key", n)
		if res.err != nil {
			reason += ": " + res.err.Error()
		}
	}
	rec, err := deadletter.RecordOf(it.msg, reason, time.Now())
	if err == nil {
		_, err = s.dead.Publish(ctx, rec)
	}
	recorded := err == nil
	if recorded && !it.due && res.out == nakError {
		err = s.skip(ctx, it)
	}
	if err != nil && (!final || !recorded) {
		s.settle(it, nakError, errors.Join(res.err, fmt.Errorf("bury: %w", err)))
		return
	}
	s.settle(it, termDead, errors.Join(errors.New(reason), err))
}

// watchDead records the messages of both consumers whose last delivery
// nobody settled, from the server's advisories (deadletter.Recorder.Watch),
// and logs each. The returned stop ends it.
func (s *Service) watchDead() (stop func(), err error) {
	return s.dead.Watch(s.nc, []deadletter.Durable{{Stream: contract.StreamIngress, Name: ConsumerName}, {Stream: contract.StreamAggregatorTimers, Name: dueConsumer}},
		func(r deadletter.Record, err error) {
			ev := s.log.Error().Str("consumer", r.Consumer).Str("stream", r.Stream).Uint64("seq", r.Sequence).
				Uint64("deliveries", r.Deliveries).Str("reason", r.Reason)
			if err != nil {
				ev.Err(err).Msg("aggregator dead letter not recorded")
				return
			}
			ev.Msg("aggregator dead letter")
		})
}

// skip records in the state of it's key that its INGRESS message takes no
// part in a job (jobs.Skip), once its predecessor is applied.
func (s *Service) skip(ctx context.Context, it work) error {
	seq := seqOf(it.msg)
	prev, err := s.index.prevOf(ctx, seq)
	if errors.Is(err, errAcked) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("skip %d: %w", seq, err)
	}
	for range maxAttempts {
		c, err := s.load(ctx, it.token)
		if err != nil {
			return fmt.Errorf("skip %d: %w", seq, err)
		}
		st := &c.e.State
		switch {
		case st.LastSeq >= seq:
			return nil
		case st.LastSeq < prev && !c.fresh:
			s.cache.forget(it.token)
			continue
		case st.LastSeq < prev:
			return fmt.Errorf("skip %d: message %d of its key is not applied", seq, prev)
		}
		if _, err := jobs.Skip(st, it.key, seq); err != nil {
			s.cache.forget(it.token)
			return fmt.Errorf("skip %d: %w", seq, err)
		}
		err = s.commit(ctx, it.token, c, jobs.Output{})
		if errors.Is(err, errConflict) {
			s.metrics.conflicts.Inc()
			continue
		}
		if err != nil {
			return fmt.Errorf("skip %d: %w", seq, err)
		}
		return nil
	}
	return fmt.Errorf("skip %d: %w", seq, errConflict)
}
