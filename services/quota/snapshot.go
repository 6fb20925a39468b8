package quota

import (
	"context"
	"errors"
	"time"
)

// snapshotTimeout bounds writing one snapshot: background work, not held to
// the platform's answer deadline.
const snapshotTimeout = 10 * time.Second

// snapshotDue starts writing a snapshot of e's account in the background
// once quota.snapshot_every events were applied since its latest one (or
// since its first event), and at least as many events as that snapshot held
// open reservations. A snapshot copies every open reservation while the
// account's decisions wait, and a platform that leaves reservations open
// adds one with every event: without that second bound, an account with
// 40,000 open reservations would be held for 100 ms or more every
// snapshot_every events; with it, each event pays for the copy of at most
// one, and a load reads at most about as many events after a snapshot as it
// holds open reservations. It is called with e locked; the writer takes the
// lock after the caller lets go. A snapshot that another replica wrote
// first, or that loses a race with a decision, is given up: the next event
// is due again.
func (s *Service) snapshotDue(e *entry) {
	if e.acct.SinceSnapshot < max(s.snapshotEvery, e.snapshotAfter) || !e.snapshotting.CompareAndSwap(false, true) {
		return
	}
	s.accounts.hold(e)
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		defer e.snapshotting.Store(false)
		ctx, cancel := context.WithTimeout(s.bg, snapshotTimeout)
		defer cancel()
		select {
		case e.lock <- struct{}{}:
		case <-ctx.Done():
			s.accounts.release(e, s.now())
			return
		}
		defer s.unlock(e)
		if err := s.writeSnapshot(ctx, e); err != nil {
			s.log.Warn().Err(err).Str("account", e.id).Msg("quota: snapshot not written")
		}
	}()
}

// writeSnapshot appends a snapshot of e's account, caught up with the
// stream, right after its last event. e is locked.
func (s *Service) writeSnapshot(ctx context.Context, e *entry) error {
	if _, err := s.sync(ctx, e); err != nil {
		return err
	}
	if e.acct.SinceSnapshot < max(s.snapshotEvery, e.snapshotAfter) {
		return nil // written by another replica meanwhile
	}
	// Encoded from the account's own maps: it is locked until stored.
	ev := e.acct.SnapshotInPlace(s.now())
	seq, err := s.store.append(ctx, ev, e.acct.Seq, e.acct.SnapshotSeq)
	switch {
	case errors.Is(err, errTooLarge):
		// Loads read every event until the account is smaller; try again
		// after as many events as it holds entries (at least
		// snapshot_every): each attempt encodes them all.
		e.snapshotAfter = e.acct.SinceSnapshot + max(s.snapshotEvery, len(e.acct.Open)+len(e.acct.Finished)+len(e.acct.Grants))
		return err
	case errors.Is(err, ErrConflict), errors.Is(err, ErrDuplicate):
		return nil
	case err != nil:
		return err
	}
	if err := e.acct.Snapshotted(ev, seq); err != nil {
		return err
	}
	e.snapshotAfter = len(e.acct.Open)
	s.metrics.snapshots.Inc()
	return nil
}
