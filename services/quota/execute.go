package quota

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sdevents/sdevents/services/quota/ledger"
)

// maxAttempts bounds how often one decision is retried after losing an
// append race; the caller's deadline bounds it too.
const maxAttempts = 32

// command decides on the current state of an account at now. It is called
// again, on a caught-up state, after every lost race, so it must not have
// effects of its own.
type command func(a *ledger.Account, now time.Time) ledger.Decision

// execute decides cmd on account id and returns the decision once its event
// is stored. It blocks while another decision of this replica holds the
// account: decisions of one replica on one account are serialized; replicas
// race through the optimistic append (appendDecision). It returns an error
// when the account cannot be read or the event cannot be stored before ctx
// ends; the event may then be stored or not (the next decision on the
// account finds out).
func (s *Service) execute(ctx context.Context, id string, cmd command) (ledger.Decision, error) {
	e, err := s.lock(ctx, id)
	if err != nil {
		return ledger.Decision{}, err
	}
	defer s.unlock(e)
	return s.appendDecision(ctx, e, cmd)
}

// appendDecision decides cmd on a locked, loaded entry and appends the
// decision's event: execute without the lock.
//
// A decision with an event is appended expecting the account's last sequence
// to be the state's: the append itself proves the state current. A decision
// without an event proves nothing, so unless it cannot depend on the state
// (a repeat — outcomes are final — or an invalid command), the state is first
// checked against the stream leader and the command decided again if it moved.
// Losing an append race catches up and decides again, at most maxAttempts
// times, with a growing random pause so that two replicas do not keep
// colliding. An append refused because a message with the event's id is
// being or has been stored (ErrDuplicate: a twin request decided the same
// transition elsewhere) waits until the state holds that message and
// decides again: the answer comes from the stored outcome, never a failure.
func (s *Service) appendDecision(ctx context.Context, e *entry, cmd command) (ledger.Decision, error) {
	fresh := false
	for attempt := 1; ; attempt++ {
		d := cmd(e.acct, s.now())
		if len(d.Events) == 0 {
			if fresh || d.Repeat || errors.Is(d.Answer.Err, ledger.ErrInvalidCommand) {
				return d, nil
			}
			moved, err := s.sync(ctx, e)
			if err != nil || !moved {
				return d, err
			}
			fresh = true
			continue
		}
		if err := ctx.Err(); err != nil {
			return d, fmt.Errorf("decide %s: %w", e.acct.ID, err)
		}
		ev := d.Events[0]
		seq, err := s.store.append(ctx, ev, e.acct.Seq, e.acct.SnapshotSeq)
		if err == nil {
			s.apply(e, ev, seq)
			s.snapshotDue(e)
			return d, nil
		}
		var dup *duplicateError
		switch {
		case attempt >= maxAttempts:
			return d, fmt.Errorf("decide %s (attempt %d): %w", e.acct.ID, attempt, err)
		case errors.As(err, &dup):
			if dup.Seq > 0 && dup.Seq <= e.acct.Seq {
				// The state holds the message with this id already, and
				// still decides it again: an id reused by an event the
				// fold skipped. Waiting cannot help.
				return d, fmt.Errorf("decide %s: %w", e.acct.ID, err)
			}
			s.metrics.duplicates.Inc()
			if err := s.awaitStored(ctx, e, dup.Seq, attempt); err != nil {
				return d, fmt.Errorf("decide %s: %w", e.acct.ID, err)
			}
			fresh = true
			continue
		case !errors.Is(err, ErrConflict):
			return d, fmt.Errorf("decide %s (attempt %d): %w", e.acct.ID, attempt, err)
		}
		s.metrics.conflicts.Inc()
		if _, err := s.sync(ctx, e); err != nil {
			return d, err
		}
		fresh = true
		if attempt > 1 {
			pause := time.Duration(rand.Int64N(int64(attempt) * int64(200*time.Microsecond)))
			select {
			case <-time.After(pause):
			case <-ctx.Done():
			}
		}
	}
}

// awaitStored catches e up until it holds the message a duplicate append
// named: at sequence seq, or, with seq 0 (still being stored elsewhere),
// until the subject moves. When it does not move, it pauses — longer after
// each attempt, up to 32 ms — and returns, so that the caller decides and
// appends again: if the message being stored never is (its proposal was
// lost with a leader), that append goes through. It returns an error when
// the account cannot be read or ctx ends.
func (s *Service) awaitStored(ctx context.Context, e *entry, seq uint64, attempt int) error {
	moved, err := s.sync(ctx, e)
	switch {
	case err != nil:
		return err
	case moved || seq > 0:
		return nil
	}
	pause := time.Millisecond << min(attempt-1, 5)
	pause += time.Duration(rand.Int64N(int64(pause)))
	select {
	case <-time.After(pause):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for a message being stored: %w", ctx.Err())
	}
}
