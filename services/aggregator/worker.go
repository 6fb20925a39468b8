package aggregator

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// work is one message for a worker: an INGRESS message of key, or a fired
// timer of key's token.
type work struct {
	msg   jetstream.Msg
	token string
	key   jobs.Key
	kind  jobs.Kind
	due   bool
}

// worker owns the keys whose tokens hash to it: it handles their messages
// one at a time, in the order they arrive, and caches their entries.
type worker struct {
	s     *Service
	in    chan work
	cache stateCache
}

// maxAttempts bounds the reload-and-retry loop after conflicts; a message
// still conflicting is retried later through the server.
const maxAttempts = 8

func (w *worker) run() {
	for it := range w.in {
		ctx, cancel := context.WithTimeout(w.s.ioctx, w.s.opts.opTimeout)
		var out outcome
		var err error
		if it.due {
			out, err = w.fire(ctx, it)
		} else {
			out, err = w.apply(ctx, it)
		}
		cancel()
		w.s.settle(it, out, err)
	}
}

// outcome is what happens to a message after it was handled.
type outcome int

const (
	ackApplied outcome = iota // state stored
	ackDone                   // nothing to do: a redelivery, a stray timer
	nakWait                   // a predecessor is not applied yet, or the index is behind
	nakError                  // a failure; retried later
)

// apply applies one INGRESS message: it waits until the key index has read
// it, loads the key's entry, and applies the message if the entry holds its
// predecessor and not the message itself. The records that close are
// published before the entry is stored (compare-and-set); the message is
// acknowledged only after that.
func (w *worker) apply(ctx context.Context, it work) (outcome, error) {
	meta, err := it.msg.Metadata()
	if err != nil {
		return nakError, err
	}
	seq := meta.Sequence.Stream
	prev, err := w.s.index.prevOf(ctx, seq)
	if errors.Is(err, errAcked) {
		return ackDone, nil
	}
	if err != nil {
		return nakWait, err
	}
	obs, readable := observe(it.key, it.kind, it.msg.Headers(), it.msg.Data(), seq, meta.Timestamp)
	for range maxAttempts {
		c, err := w.load(ctx, it.token)
		if err != nil {
			return nakError, err
		}
		st := &c.e.State
		switch {
		case st.LastSeq >= seq:
			return ackDone, nil // applied before: a redelivery
		case st.LastSeq < prev && !c.fresh:
			w.cache.forget(it.token) // another replica may have applied it
			continue
		case st.LastSeq < prev:
			return nakWait, nil // the predecessor is not applied yet
		}
		var recs []jobs.Record
		if readable {
			recs, _, err = jobs.Step(st, obs, w.s.cfg)
		}
		if !readable || errors.Is(err, jobs.ErrInvalidObservation) {
			w.s.metrics.skipped.Inc()
			_, err = jobs.Skip(st, it.key, seq)
		}
		if err != nil {
			w.cache.forget(it.token)
			return nakError, err
		}
		w.s.opts.hooks.beforeCommit(seq)
		err = w.commit(ctx, it.token, c, recs)
		if errors.Is(err, errConflict) {
			w.s.metrics.conflicts.Inc()
			continue
		}
		if err != nil {
			return nakError, err
		}
		return ackApplied, nil
	}
	return nakError, errConflict
}

// fire handles a fired timer: once every INGRESS message of the key stored
// before the watermark (the firing time minus the timer margin) is applied,
// it closes the jobs whose deadline has passed by then (jobs.Tick) and arms
// the timer again for the jobs still open.
func (w *worker) fire(ctx context.Context, it work) (outcome, error) {
	meta, err := it.msg.Metadata()
	if err != nil {
		return nakError, err
	}
	mark := meta.Timestamp.Add(-w.s.opts.timerMargin)
	if err := w.s.index.watermark(ctx, mark); err != nil {
		return nakWait, err
	}
	for range maxAttempts {
		c, err := w.load(ctx, it.token)
		if err != nil {
			return nakError, err
		}
		if c.rev == 0 {
			return ackDone, nil // a stray timer
		}
		if w.s.index.lastOf(it.token) > c.e.State.LastSeq {
			if !c.fresh {
				w.cache.forget(it.token)
				continue
			}
			return nakWait, nil // messages of the key are still being applied
		}
		recs := jobs.Tick(&c.e.State, mark, w.s.cfg)
		hadTimer := !c.e.TimerAt.IsZero()
		c.e.TimerAt = time.Time{}
		if len(recs) == 0 && !hadTimer {
			if _, open := jobs.Deadline(&c.e.State); !open {
				return ackDone, nil
			}
		}
		err = w.commit(ctx, it.token, c, recs)
		if errors.Is(err, errConflict) {
			w.s.metrics.conflicts.Inc()
			continue
		}
		if err != nil {
			return nakError, err
		}
		w.s.metrics.fired.Inc()
		return ackApplied, nil
	}
	return nakError, errConflict
}

// load returns the cached entry of token, or reads it (fresh).
func (w *worker) load(ctx context.Context, token string) (*cached, error) {
	if c, ok := w.cache.get(token); ok {
		c.fresh = false
		return c, nil
	}
	e, rev, err := w.s.store.load(ctx, token)
	if err != nil {
		return nil, err
	}
	c := &cached{e: e, rev: rev, fresh: true}
	w.cache.put(token, c)
	return c, nil
}

// commit publishes recs, arms the key's timer, and stores c's entry with
// compare-and-set, in that order, so that a crash at any point leaves
// nothing to lose: a redelivery republishes the same records (de-duplicated
// by job id) and re-arms. Any failure drops the cached entry, which the
// caller has modified.
func (w *worker) commit(ctx context.Context, token string, c *cached, recs []jobs.Record) error {
	err := w.s.publish(ctx, recs)
	if err == nil {
		err = w.s.arm(ctx, token, &c.e)
	}
	if err == nil {
		c.rev, err = w.s.store.save(ctx, token, c.e, c.rev)
	}
	if err != nil {
		w.cache.forget(token)
	}
	return err
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
	}
	s.metrics.handled(it.due, out)
	lvl := zerolog.DebugLevel
	if out == nakError {
		lvl = zerolog.WarnLevel
	}
	if ev := s.log.WithLevel(lvl); ev.Enabled() {
		ev.Str("subject", it.msg.Subject()).Str("key", it.token).Int("outcome", int(out)).
			AnErr("error", err).AnErr("ack_error", ackErr).Msg("aggregator message")
	}
}

// retryDelay grows with the number of deliveries: 25 ms, doubling, at most
// 2 s.
func (s *Service) retryDelay(m jetstream.Msg) time.Duration {
	n := uint64(1)
	if meta, err := m.Metadata(); err == nil {
		n = meta.NumDelivered
	}
	d := 25 * time.Millisecond << min(n-1, 7)
	return min(d, 2*time.Second)
}
