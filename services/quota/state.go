package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/services/quota/ledger"
	"github.com/sdevents/sdevents/streams"
)

// recentEvents is how many of an account's latest events a replica keeps for
// the operator API.
const recentEvents = 50

// StoredEvent is a ledger event with its QUOTA stream sequence.
type StoredEvent struct {
	Seq uint64 `json:"seq"`
	ledger.Event
}

// entry is one account in a replica's memory: the fold of its events, its
// latest events, and the lock that serializes the replica's decisions on it.
type entry struct {
	lock   chan struct{}   // a mutex that a waiter can give up on (ctx)
	acct   *ledger.Account // nil until loaded
	recent []StoredEvent   // the latest recentEvents events, oldest first
}

// accounts holds every account a replica has used since it started: a plain
// map, never evicted. An account costs its open reservations plus a few dozen
// bytes per finished invokeId and grant id; a replica serving millions of
// accounts would need an LRU here (eviction is safe: an account reloads from
// the stream).
type accounts struct {
	mu sync.Mutex
	m  map[string]*entry
}

func (a *accounts) get(id string) *entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[id]
	if !ok {
		e = &entry{lock: make(chan struct{}, 1)}
		a.m[id] = e
	}
	return e
}

func (e *entry) unlock() { <-e.lock }

// lock takes the account's lock, waiting at most until ctx ends, and loads the
// account from the stream on first use. On load, reservations already past
// their expiry (their timer fired while no replica ran, or was lost) are
// expired. The caller calls e.unlock.
func (s *Service) lock(ctx context.Context, id string) (*entry, error) {
	e := s.accounts.get(id)
	select {
	case e.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("account %s busy: %w", id, ctx.Err())
	}
	if e.acct != nil {
		return e, nil
	}
	if err := s.load(ctx, e, id); err != nil {
		e.unlock()
		return nil, err
	}
	s.expireDue(ctx, e)
	return e, nil
}

// load folds the account's whole history, read through an ordered consumer.
func (s *Service) load(ctx context.Context, e *entry, id string) error {
	last, err := s.store.lastSeq(ctx, id)
	if err != nil {
		return fmt.Errorf("load %s: %w", id, err)
	}
	e.acct, e.recent = ledger.NewAccount(id), nil
	err = readRange(ctx, s.js, streams.Quota, ledgerSubject(id), 1, last, func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		s.applyData(e, m.Data(), md.Sequence.Stream)
		return nil
	})
	if err != nil {
		e.acct = nil
		return fmt.Errorf("load %s: %w", id, err)
	}
	return nil
}

// expireDue expires the account's reservations that are past their expiry.
// Failures are logged: the timers retry.
func (s *Service) expireDue(ctx context.Context, e *entry) {
	for _, inv := range e.acct.Due(s.now()) {
		d, err := s.run(ctx, e, func(a *ledger.Account, now time.Time) ledger.Decision { return a.Expire(inv, now) })
		if err != nil {
			s.log.Warn().Err(err).Str("account", e.acct.ID).Str("invoke_id", inv).Msg("quota: expire on load")
			return
		}
		if len(d.Events) > 0 {
			s.log.Info().Str("account", e.acct.ID).Str("invoke_id", inv).Msg("quota: overdue reservation expired on load")
		}
	}
}

// sync brings e up to the leader's last event of the account and reports
// whether anything changed. A stream behind the state (QUOTA purged or
// recreated) makes it reload the account.
func (s *Service) sync(ctx context.Context, e *entry) (moved bool, err error) {
	id := e.acct.ID
	last, err := s.store.lastSeq(ctx, id)
	switch {
	case err != nil:
		return false, fmt.Errorf("sync %s: %w", id, err)
	case last == e.acct.Seq:
		return false, nil
	case last < e.acct.Seq:
		s.log.Warn().Str("account", id).Uint64("stream", last).Uint64("state", e.acct.Seq).Msg("quota: stream behind the state; reloading")
		return true, s.load(ctx, e, id)
	}
	for e.acct.Seq < last {
		m, err := s.store.get(ctx, ledgerSubject(id), e.acct.Seq+1, true)
		if errors.Is(err, errNoMsg) {
			break
		}
		if err != nil {
			return true, fmt.Errorf("sync %s: %w", id, err)
		}
		s.applyData(e, m.Data, m.Seq)
	}
	return true, nil
}

// applyData folds one stored message into e. An undecodable event is logged
// and skipped (its sequence still counts), so that a replica never gets stuck
// on it; the replay tool reports it.
func (s *Service) applyData(e *entry, data []byte, seq uint64) {
	var ev ledger.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		s.log.Error().Err(err).Str("account", e.acct.ID).Uint64("seq", seq).Msg("quota: undecodable ledger event skipped")
		e.acct.Seq = max(e.acct.Seq, seq)
		return
	}
	s.apply(e, ev, seq)
}

// apply folds event ev, stored at seq, into e. An inconsistent event is
// logged and folded as far as the ledger can (see ledger.Account.Apply).
func (s *Service) apply(e *entry, ev ledger.Event, seq uint64) {
	err := e.acct.Apply(ev, seq)
	switch {
	case errors.Is(err, ledger.ErrAlreadyApplied):
		return
	case err != nil:
		s.log.Error().Err(err).Str("account", e.acct.ID).Msg("quota: inconsistent ledger event")
	}
	e.recent = append(e.recent, StoredEvent{Seq: seq, Event: ev})
	if n := len(e.recent) - recentEvents; n > 0 {
		e.recent = append(e.recent[:0], e.recent[n:]...)
	}
}
