package aggregator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// work is one message for a key's lane: an INGRESS message of key, or a
// fired timer of key's token.
type work struct {
	msg   jetstream.Msg
	token string
	key   jobs.Key
	kind  jobs.Kind
	due   bool
}

// lane holds the messages of one key that wait to be handled. A key has a
// lane only while it has messages; one goroutine runs it, so a key's
// messages are handled one group at a time, never concurrently.
type lane struct {
	pending []work
}

// enqueue gives it to its key's lane, starting the lane when the key has
// none. It blocks while the maximum number of lanes run (WithWorkers). After
// shutdown has begun it drops it, unacknowledged: it is redelivered.
func (s *Service) enqueue(it work) {
	s.lanesMu.Lock()
	if s.stopping {
		s.lanesMu.Unlock()
		return
	}
	if l, ok := s.lanes[it.token]; ok {
		l.pending = append(l.pending, it)
		s.lanesMu.Unlock()
		return
	}
	l := &lane{pending: []work{it}}
	s.lanes[it.token] = l
	s.lanesRunning.Add(1)
	s.lanesMu.Unlock()
	s.slots <- struct{}{}
	go func() {
		defer s.lanesRunning.Done()
		defer func() { <-s.slots }()
		s.runLane(it.token, l)
	}()
}

// stopLanes refuses further messages and waits until every lane has
// handled what it holds.
func (s *Service) stopLanes() {
	s.lanesMu.Lock()
	s.stopping = true
	s.lanesMu.Unlock()
	s.lanesRunning.Wait()
}

// runLane handles everything pending on l, as groups, until nothing is
// left; then the key has no lane any more.
func (s *Service) runLane(token string, l *lane) {
	for {
		s.lanesMu.Lock()
		group := l.pending
		if len(group) > maxGroup {
			// A hot key's backlog is taken in parts, so that one group's
			// reads, lookups and publishes fit in one operation timeout.
			group, l.pending = group[:maxGroup:maxGroup], slices.Clone(group[maxGroup:])
		} else {
			l.pending = nil
		}
		if len(group) == 0 {
			delete(s.lanes, token)
			s.lanesMu.Unlock()
			return
		}
		s.lanesMu.Unlock()
		s.handle(token, group)
	}
}

// maxGroup bounds the messages of one key handled together.
const maxGroup = 64

// handle handles a group of one key: its INGRESS messages together (group
// commit, applyGroup), then its fired timers one by one. A message on its
// last chance (delivered a third of max_deliver times, dead.go) is handled
// alone, first, so that a failure is its own, and is buried when it fails
// again.
func (s *Service) handle(token string, group []work) {
	var msgs, last []work
	for _, it := range group {
		switch {
		case it.due:
		case s.lastChance(it.msg, s.ingressBudget):
			last = append(last, it)
		default:
			msgs = append(msgs, it)
		}
	}
	slices.SortFunc(last, func(a, b work) int { return cmp.Compare(seqOf(a.msg), seqOf(b.msg)) })
	for _, it := range last {
		ctx, cancel := context.WithTimeout(s.ioctx, s.opts.opTimeout)
		res := s.safeApply(ctx, token, []work{it})[0]
		if res.out == nakError || res.out == nakWait && s.ingressBudget.Last(deliveries(it.msg)) {
			s.bury(ctx, it, res)
		} else {
			s.settle(it, res.out, res.err)
		}
		cancel()
	}
	if len(msgs) > 0 {
		ctx, cancel := context.WithTimeout(s.ioctx, s.opts.opTimeout)
		res := s.safeApply(ctx, token, msgs)
		cancel()
		for i, it := range msgs {
			s.settle(it, res[i].out, res[i].err)
		}
	}
	for _, it := range group {
		if !it.due {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ioctx, s.opts.opTimeout)
		out, err := s.safeFire(ctx, it)
		n := deliveries(it.msg)
		if s.lastChance(it.msg, s.dueBudget) && out == nakError || out == nakWait && s.dueBudget.Last(n) {
			s.bury(ctx, it, result{out, err})
		} else {
			s.settle(it, out, err)
		}
		cancel()
	}
}

// safeApply is applyGroup, with a panic turned into an error of every
// message (the key's cached entry, possibly half changed, is dropped).
func (s *Service) safeApply(ctx context.Context, token string, msgs []work) (res []result) {
	defer func() {
		if p := recover(); p != nil {
			s.cache.forget(token)
			err := fmt.Errorf("panic: %v", p)
			res = make([]result, len(msgs))
			for i := range res {
				res[i] = result{nakError, err}
			}
		}
	}()
	return s.applyGroup(ctx, token, msgs)
}

// safeFire is fire, with a panic turned into an error.
func (s *Service) safeFire(ctx context.Context, it work) (out outcome, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.cache.forget(it.token)
			out, err = nakError, fmt.Errorf("panic: %v", p)
		}
	}()
	if err := s.opts.hooks.fire(it.token); err != nil {
		return nakError, err
	}
	return s.fire(ctx, it)
}

// maxAttempts bounds the reload-and-retry loop after conflicts; a message
// still conflicting is retried later through the server.
const maxAttempts = 8

// outcome is what happens to a message after it was handled.
type outcome int

const (
	ackApplied outcome = iota // state stored
	ackDone                   // nothing to do: a redelivery, a stray timer
	nakWait                   // a predecessor is not applied yet, or the index is behind
	nakError                  // a failure; retried later
	termDead                  // given up: recorded on sd.dead.<consumer> and terminated
)

// result is the outcome of one message of a group.
type result struct {
	out outcome
	err error
}

// pendingMsg is one INGRESS sequence of a group, with every delivery of it
// the group holds (a redelivery may arrive while the first is pending).
type pendingMsg struct {
	seq, prev uint64
	obs       jobs.Observation
	readable  bool
	items     []int // indexes in the group
	res       result
}

// applyGroup applies a group of INGRESS messages of one key in a single
// state write (group commit). It waits until the key index has read them,
// loads the key's entry, and applies, in INGRESS order, every message whose
// predecessor the entry holds, by then, and that it does not hold yet:
// applying one makes its successor in the group applicable. The records that
// close are published, then the entry is stored once with compare-and-set;
// the caller acknowledges the applied messages only after that. It returns
// the result of each message of msgs, in order.
func (s *Service) applyGroup(ctx context.Context, token string, msgs []work) []result {
	out := make([]result, len(msgs))
	bySeq := map[uint64]*pendingMsg{}
	var todo []*pendingMsg
	for i, it := range msgs {
		meta, err := it.msg.Metadata()
		if err != nil {
			out[i] = result{nakError, err}
			continue
		}
		seq := meta.Sequence.Stream
		if p := bySeq[seq]; p != nil {
			p.items = append(p.items, i) // the same message, delivered again
			continue
		}
		p := &pendingMsg{seq: seq, items: []int{i}}
		bySeq[seq] = p
		prev, err := s.index.prevOf(ctx, seq)
		switch {
		case errors.Is(err, errAcked):
			p.res = result{ackDone, nil}
			continue
		case err != nil:
			p.res = result{nakWait, err}
			continue
		}
		p.prev = prev
		p.obs, p.readable = observe(it.key, it.kind, it.msg.Headers(), it.msg.Data(), seq, meta.Timestamp)
		todo = append(todo, p)
	}
	slices.SortFunc(todo, func(a, b *pendingMsg) int { return cmp.Compare(a.seq, b.seq) })
	if len(todo) > 0 {
		s.applyInOrder(ctx, token, msgs[todo[0].items[0]].key, todo)
	}
	for _, p := range bySeq {
		for _, i := range p.items {
			out[i] = p.res
		}
	}
	return out
}

// applyInOrder is applyGroup's load-apply-commit loop over todo, sorted by
// sequence, distinct; it sets each one's result.
func (s *Service) applyInOrder(ctx context.Context, token string, key jobs.Key, todo []*pendingMsg) {
	for range maxAttempts {
		c, err := s.load(ctx, token)
		if err != nil {
			setAll(todo, result{nakError, err})
			return
		}
		st := &c.e.State
		var out jobs.Output
		var applied []*pendingMsg
		waiting := false
		for _, p := range todo {
			switch {
			case p.seq <= st.LastSeq:
				p.res = result{ackDone, nil} // applied before: a redelivery
				continue
			case st.LastSeq < p.prev:
				p.res = result{nakWait, nil} // the predecessor is not applied yet
				waiting = true
				continue
			}
			if err := s.opts.hooks.apply(p.seq); err != nil {
				p.res = result{nakError, err} // st is unchanged; the successors wait
				continue
			}
			var o jobs.Output
			var err error
			if p.readable {
				o, _, err = jobs.Step(st, p.obs, s.cfg)
			}
			if !p.readable || errors.Is(err, jobs.ErrInvalidObservation) {
				s.metrics.skipped.Inc()
				_, err = jobs.Skip(st, key, p.seq)
			}
			if err != nil {
				// st is unchanged; the message's successors wait for it.
				p.res = result{nakError, err}
				continue
			}
			p.res = result{ackApplied, nil}
			out.Chunks = append(out.Chunks, o.Chunks...)
			out.Closed = append(out.Closed, o.Closed...)
			applied = append(applied, p)
		}
		if len(applied) == 0 {
			if waiting && !c.fresh {
				s.cache.forget(token) // another replica may have applied the predecessors
				continue
			}
			return
		}
		for _, p := range applied {
			s.opts.hooks.beforeCommit(p.seq)
		}
		err = s.commit(ctx, token, c, out)
		if errors.Is(err, errConflict) {
			s.metrics.conflicts.Inc()
			continue
		}
		if err != nil {
			setAll(applied, result{nakError, err})
			return
		}
		s.metrics.commits.Inc()
		return
	}
	for _, p := range todo {
		if p.res.out == ackApplied {
			p.res = result{nakError, errConflict}
		}
	}
}

func setAll(ps []*pendingMsg, r result) {
	for _, p := range ps {
		p.res = r
	}
}

// fire handles a fired timer: once every INGRESS message of the key stored
// before the watermark (the firing time minus the timer margin) is applied,
// it closes the jobs whose deadline has passed by then (jobs.Tick) and arms
// the timer again for the jobs still open.
func (s *Service) fire(ctx context.Context, it work) (outcome, error) {
	meta, err := it.msg.Metadata()
	if err != nil {
		return nakError, err
	}
	mark := meta.Timestamp.Add(-s.opts.timerMargin)
	if err := s.index.watermark(ctx, mark); err != nil {
		return nakWait, err
	}
	for range maxAttempts {
		c, err := s.load(ctx, it.token)
		if err != nil {
			return nakError, err
		}
		if c.rev == 0 {
			return ackDone, nil // a stray timer
		}
		if s.index.lastOf(it.token) > c.e.State.LastSeq {
			if !c.fresh {
				s.cache.forget(it.token)
				continue
			}
			return nakWait, nil // messages of the key are still being applied
		}
		closed := jobs.Tick(&c.e.State, mark, s.cfg)
		hadTimer := !c.e.TimerAt.IsZero()
		c.e.TimerAt = time.Time{}
		if len(closed) == 0 && !hadTimer {
			if _, open := jobs.Deadline(&c.e.State, s.cfg); !open {
				return ackDone, nil
			}
		}
		err = s.commit(ctx, it.token, c, jobs.Output{Closed: closed})
		if errors.Is(err, errConflict) {
			s.metrics.conflicts.Inc()
			continue
		}
		if err != nil {
			return nakError, err
		}
		s.metrics.fired.Inc()
		return ackApplied, nil
	}
	return nakError, errConflict
}

// load returns the cached entry of token, or reads it (fresh). Only the
// key's lane uses the entry it returns.
func (s *Service) load(ctx context.Context, token string) (*cached, error) {
	if c, ok := s.cache.get(token); ok {
		c.fresh = false
		return c, nil
	}
	e, rev, err := s.store.load(ctx, token)
	if err != nil {
		return nil, err
	}
	c := &cached{e: e, rev: rev, fresh: true}
	s.cache.put(token, c)
	return c, nil
}

// commit stores what a group of messages (or a timer) changed in c's entry,
// in an order that leaves nothing to lose at a crash: the chunks of facts of
// the jobs still open (idempotent: a redelivery stores the same ones
// again), the records of the jobs that closed (de-duplicated by job id), the
// key's timer, and last the entry, with compare-and-set. Once the entry is
// stored, the subjects of the closed jobs that handed facts out are purged.
// Any failure drops the cached entry, which the caller has modified.
func (s *Service) commit(ctx context.Context, token string, c *cached, out jobs.Output) error {
	closing := make(map[string][]jobs.Fact, len(out.Closed))
	var purge []string
	for _, cl := range out.Closed {
		closing[cl.Job.ID] = nil
		if cl.Job.Facts > len(cl.Job.Inline) {
			// It handed chunks out: stored ones, or this group's, which an
			// attempt that lost its compare-and-set may have stored.
			purge = append(purge, cl.Job.ID)
		}
	}
	var chunks []jobs.Chunk
	for _, ch := range out.Chunks {
		if fs, ok := closing[ch.JobID]; ok {
			closing[ch.JobID] = append(fs, ch.Facts...) // closes in this group: not stored
		} else {
			chunks = append(chunks, ch)
		}
	}
	err := s.storeChunks(ctx, chunks)
	var recs []jobs.Record
	if err == nil {
		recs, err = s.records(ctx, out.Closed, closing)
	}
	if err == nil {
		err = s.publish(ctx, recs)
	}
	if err == nil {
		err = s.arm(ctx, token, &c.e)
	}
	if err == nil {
		c.rev, err = s.store.save(ctx, token, c.e, c.rev)
	}
	if err != nil {
		s.cache.forget(token)
		return err
	}
	s.cache.put(token, c)
	s.purgeFacts(ctx, purge)
	return nil
}

// settle acknowledges or negatively acknowledges a handled message, and logs
// it once.
func (s *Service) settle(it work, out outcome, err error) {
	var ackErr error
	switch out {
	case ackApplied, ackDone:
		ackErr = s.opts.hooks.ack(it.msg)
	case nakWait:
		ackErr = it.msg.NakWithDelay(s.retryDelay(it.msg))
	case nakError:
		ackErr = it.msg.NakWithDelay(s.retryDelay(it.msg))
	case termDead:
		ackErr = it.msg.Term()
	}
	s.metrics.handled(it.due, out)
	lvl := zerolog.DebugLevel
	switch out {
	case nakError:
		lvl = zerolog.WarnLevel
	case termDead:
		lvl = zerolog.ErrorLevel
	}
	if ev := s.log.WithLevel(lvl); ev.Enabled() {
		ev.Str("subject", it.msg.Subject()).Str("key", it.token).Str("outcome", outcomeNames[out]).
			AnErr("error", err).AnErr("ack_error", ackErr).Msg("aggregator message")
	}
}

// retryDelay grows with the number of deliveries: 25 ms, doubling, at most
// 2 s, and 10 s from the 60th delivery on. With max_deliver 200, a message
// that keeps failing is buried after about 3 minutes (a third of the
// budget), one that waits for its predecessor after about 25.
func (s *Service) retryDelay(m jetstream.Msg) time.Duration {
	n := max(deliveries(m), 1)
	if n >= 60 {
		return 10 * time.Second
	}
	d := 25 * time.Millisecond << min(n-1, 7)
	return min(d, 2*time.Second)
}

// deliveries is how often m has been delivered, 0 when unknown.
func deliveries(m jetstream.Msg) uint64 {
	if meta, err := m.Metadata(); err == nil {
		return meta.NumDelivered
	}
	return 0
}

// seqOf is m's stream sequence, 0 when unknown.
func seqOf(m jetstream.Msg) uint64 {
	if meta, err := m.Metadata(); err == nil {
		return meta.Sequence.Stream
	}
	return 0
}
