package quota

import (
	"cmp"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/services/quota/ledger"
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
	id     string
	lock   chan struct{}   // a mutex that a waiter can give up on (ctx)
	acct   *ledger.Account // nil until loaded
	recent []StoredEvent   // the latest recentEvents events read, oldest first
	forgot time.Time       // when outcomes were last forgotten

	// Guarded by accounts.mu.
	users int           // goroutines holding or waiting for lock: not evicted while > 0
	used  time.Time     // when the last user let go
	elem  *list.Element // in accounts.lru

	snapshotting  atomic.Bool // a snapshot is being written
	snapshotAfter int         // no snapshot before SinceSnapshot reaches it: the latest snapshot's open reservations, or more (guarded by lock)

	// due is the earliest expiry of the account's open reservations, in
	// Unix nanoseconds (math.MaxInt64: none), or earlier: it is lowered as
	// reservations are applied and recomputed when loaded and swept, so that
	// the sweep of overdue reservations (sweepOverdue) finds every account
	// that has one without taking its lock.
	due atomic.Int64
}

// noteExpiry lowers e.due to at.
func (e *entry) noteExpiry(at time.Time) {
	if at.IsZero() {
		return
	}
	n := at.UnixNano()
	for {
		cur := e.due.Load()
		if n >= cur || e.due.CompareAndSwap(cur, n) {
			return
		}
	}
}

// noteExpiries sets e.due to the earliest expiry of the open reservations
// (math.MaxInt64 when none expires). e is locked and loaded.
func (e *entry) noteExpiries() {
	e.due.Store(math.MaxInt64)
	e.noteExpiry(e.acct.NextExpiry())
}

// accounts holds the accounts a replica has used recently: at most max, and
// none unused for longer than idle (quota.max_accounts, quota.account_idle).
// An account dropped from memory loads again from the stream, from its
// latest snapshot, when it is used; one in use is never dropped.
type accounts struct {
	mu   sync.Mutex
	m    map[string]*entry
	lru  list.List // of *entry, the most recently used first
	max  int
	idle time.Duration
	// size reports the number of accounts held after every change.
	size func(int)
}

// get returns the entry of id, creating it, and counts the caller as a user
// until it calls release.
func (a *accounts) get(id string) *entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[id]
	if !ok {
		e = &entry{id: id, lock: make(chan struct{}, 1)}
		e.due.Store(math.MaxInt64)
		e.elem = a.lru.PushFront(e)
		a.m[id] = e
		a.size(len(a.m))
	} else {
		a.lru.MoveToFront(e.elem)
	}
	e.users++
	return e
}

// hold counts one more user of e, which the caller has from get.
func (a *accounts) hold(e *entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.users++
}

// release ends a use of e at now, and drops the least recently used idle
// accounts beyond max.
func (a *accounts) release(e *entry, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.users--
	e.used = now
	a.evictLocked(now, false)
}

// overdue returns the accounts held whose earliest expiry (entry.due) is
// before cutoff, each counted as a user (not evicted) until its caller
// calls letGo.
func (a *accounts) overdue(cutoff time.Time) []*entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	var es []*entry
	for _, e := range a.m {
		if e.due.Load() < cutoff.UnixNano() {
			e.users++
			es = append(es, e)
		}
	}
	return es
}

// letGo ends a use of e counted by overdue without making e recently used.
func (a *accounts) letGo(e *entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.users--
}

// evict drops the accounts not used since now − idle, and the least
// recently used beyond max; never one in use. It returns how many it
// dropped.
func (a *accounts) evict(now time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.evictLocked(now, true)
}

func (a *accounts) evictLocked(now time.Time, idle bool) int {
	n := 0
	for el := a.lru.Back(); el != nil; {
		e := el.Value.(*entry)
		prev := el.Prev()
		over := len(a.m) > a.max
		if !over && (!idle || now.Sub(e.used) < a.idle) {
			break // the rest were used more recently
		}
		if e.users == 0 {
			a.lru.Remove(el)
			delete(a.m, e.id)
			n++
		}
		el = prev
	}
	if n > 0 {
		a.size(len(a.m))
	}
	return n
}

// len is the number of accounts held.
func (a *accounts) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m)
}

// unlock releases the account's lock taken by lock.
func (s *Service) unlock(e *entry) {
	<-e.lock
	s.accounts.release(e, s.now())
}

// lock takes the account's lock, waiting at most until ctx ends, and loads the
// account from the stream on first use. On load, reservations already past
// their expiry (their timer fired while no replica ran, or was lost) are
// expired. Outcomes older than quota.decided_retention are forgotten now and
// then. The caller calls s.unlock(e).
func (s *Service) lock(ctx context.Context, id string) (*entry, error) {
	e := s.accounts.get(id)
	select {
	case e.lock <- struct{}{}:
	case <-ctx.Done():
		s.accounts.release(e, s.now())
		return nil, fmt.Errorf("account %s busy: %w", id, ctx.Err())
	}
	if e.acct == nil {
		if err := s.load(ctx, e, id); err != nil {
			s.unlock(e)
			return nil, err
		}
		s.expireDue(ctx, e, "")
	}
	if now := s.now(); now.Sub(e.forgot) >= s.retention/10 {
		e.acct.Forget(now.Add(-s.retention))
		e.forgot = now
	}
	return e, nil
}

// headerSnapshot, on every event this service appends once its account has
// a snapshot, is the stream sequence of the latest one: loading reads it
// from the subject's last message.
const headerSnapshot = "sd-snapshot-seq"

// load folds the account from the stream: from its latest snapshot and the
// events after it (CONTRACT §6, docs/quota.md "Snapshots"), or from its
// first event when it has no usable snapshot. The latest snapshot is the
// subject's last message, or the one its headerSnapshot names.
func (s *Service) load(ctx context.Context, e *entry, id string) error {
	last, err := s.store.get(ctx, ledgerSubject(id), 0, false)
	if errors.Is(err, errNoMsg) {
		e.acct, e.recent = ledger.NewAccount(id), nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("load %s: %w", id, err)
	}
	e.acct, e.recent, e.snapshotAfter = s.latestSnapshot(ctx, id, last), nil, 0
	read := 0
	if e.acct == nil {
		e.acct = ledger.NewAccount(id)
	} else {
		e.snapshotAfter = len(e.acct.Open)
	}
	err = readRange(ctx, s.js, contract.StreamQuota, ledgerSubject(id), e.acct.Seq+1, last.Seq, func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		read++
		s.applyData(e, m.Data(), md.Sequence.Stream)
		return nil
	})
	if err != nil {
		e.acct = nil
		return fmt.Errorf("load %s: %w", id, err)
	}
	s.metrics.loads.Inc()
	s.metrics.loaded.Add(float64(read))
	e.noteExpiries()
	s.snapshotDue(e)
	return nil
}

// latestSnapshot returns the account the latest snapshot of id describes,
// given the subject's last message, or nil when there is none or it cannot
// be used (the caller reads every event; the reason is logged).
func (s *Service) latestSnapshot(ctx context.Context, id string, last storedMsg) *ledger.Account {
	m := last
	if typ, _ := eventType(m.Data); typ != ledger.TypeSnapshot {
		seq, ok := snapshotPointer(m.Header)
		if !ok {
			return nil
		}
		var err error
		if m, err = s.store.get(ctx, ledgerSubject(id), seq, true); err != nil || m.Seq != seq {
			s.log.Warn().Err(err).Str("account", id).Uint64("seq", seq).Msg("quota: snapshot not found; loading every event")
			return nil
		}
	}
	var ev ledger.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		s.log.Warn().Err(err).Str("account", id).Uint64("seq", m.Seq).Msg("quota: undecodable snapshot; loading every event")
		return nil
	}
	a, err := ledger.FromSnapshot(ev, m.Seq)
	if err != nil || a.ID != id {
		s.log.Warn().Err(err).Str("account", id).Uint64("seq", m.Seq).Msg("quota: unusable snapshot; loading every event")
		return nil
	}
	return a
}

// eventType returns the type of an event's JSON data.
func eventType(data []byte) (ledger.EventType, error) {
	var t struct {
		Type ledger.EventType `json:"type"`
	}
	err := json.Unmarshal(data, &t)
	return t.Type, err
}

// snapshotPointer reads headerSnapshot from a stored message's headers.
func snapshotPointer(hdrs []byte) (uint64, bool) {
	if len(hdrs) == 0 {
		return 0, false
	}
	h, err := nats.DecodeHeadersMsg(hdrs)
	if err != nil {
		return 0, false
	}
	seq, err := strconv.ParseUint(h.Get(headerSnapshot), 10, 64)
	return seq, err == nil && seq > 0
}

// expireDue expires the account's reservations that are past their expiry,
// on load (kind "") or in the sweep (kind "sweep"). The sweep's decisions
// are counted in decisions_total under kind; those on load are not: a fired
// timer loads its account first, so an expiry on load is routine. Failures
// are logged: the timers retry, and so does the next sweep.
func (s *Service) expireDue(ctx context.Context, e *entry, kind string) {
	for _, inv := range e.acct.Due(s.now()) {
		start := time.Now()
		d, err := s.appendDecision(ctx, e, func(a *ledger.Account, now time.Time) ledger.Decision { return a.Expire(inv, now) })
		if kind != "" {
			s.metrics.observe(kind, start, d.Answer.Success, err)
		}
		log := s.log.With().Str("account", e.acct.ID).Str("invoke_id", inv).Str("by", cmp.Or(kind, "load")).Logger()
		if err != nil {
			log.Warn().Err(err).Msg("quota: overdue reservation not expired")
			return
		}
		if len(d.Events) > 0 {
			log.Info().Msg("quota: overdue reservation expired")
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
		s.log.Warn().Str("account", id).Uint64("stream_seq", last).Uint64("state_seq", e.acct.Seq).Msg("quota: stream behind the state; reloading")
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
// Snapshots are not kept among the recent events: they repeat the state.
func (s *Service) apply(e *entry, ev ledger.Event, seq uint64) {
	err := e.acct.Apply(ev, seq)
	switch {
	case errors.Is(err, ledger.ErrAlreadyApplied):
		return
	case err != nil:
		s.log.Error().Err(err).Str("account", e.acct.ID).Msg("quota: inconsistent ledger event")
	}
	if ev.Type == ledger.TypeSnapshot {
		e.snapshotAfter = len(e.acct.Open)
		return
	}
	if ev.Type == ledger.TypeReserved {
		e.noteExpiry(ev.ExpiresAt)
	}
	e.recent = append(e.recent, StoredEvent{Seq: seq, Event: ev})
	if n := len(e.recent) - recentEvents; n > 0 {
		e.recent = append(e.recent[:0], e.recent[n:]...)
	}
}
