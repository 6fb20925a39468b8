package ingress

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sdevents/sdevents/pkg/contract"
)

// seenIndex is this replica's memory of the de-duplication keys of every
// INGRESS event of the last horizon, key fingerprint → stream sequence. It is
// derived from the stream itself by a headers-only ordered consumer (tail), so
// it includes the events every other replica stored, survives nothing and
// needs nothing to survive: a restarted replica rebuilds it before it reports
// ready. Fingerprints are 64 bits of the key's SHA-256; a hit is confirmed by
// reading the stored message, so a collision costs a read, never an event.
//
// Entries live in time slots (by the event's stream timestamp) so that
// forgetting the oldest slot forgets everything older than the horizon.
type seenIndex struct {
	horizon time.Duration
	slotLen time.Duration

	mu    sync.RWMutex
	slots map[int64]map[uint64]uint64 // slot number → fingerprint → seq

	ready   atomic.Bool
	entries atomic.Int64
}

func newSeenIndex(horizon time.Duration) *seenIndex {
	return &seenIndex{horizon: horizon, slotLen: horizon / 42, slots: map[int64]map[uint64]uint64{}}
}

// fingerprint returns 64 bits of a key's hex digest ("cb-…"/"sns-…"), or
// false for a key of another shape.
func fingerprint(key string) (uint64, bool) {
	_, h, ok := strings.Cut(key, "-")
	if !ok || len(h) < 16 {
		return 0, false
	}
	var b [8]byte
	if _, err := hex.Decode(b[:], []byte(h[:16])); err != nil {
		return 0, false
	}
	var fp uint64
	for _, c := range b {
		fp = fp<<8 | uint64(c)
	}
	return fp, true
}

func (x *seenIndex) add(fp, seq uint64, at time.Time) {
	slot := at.UnixNano() / int64(x.slotLen)
	x.mu.Lock()
	defer x.mu.Unlock()
	m, ok := x.slots[slot]
	if !ok {
		m = map[uint64]uint64{}
		x.slots[slot] = m
	}
	if _, dup := m[fp]; !dup {
		x.entries.Add(1)
	}
	m[fp] = seq
}

func (x *seenIndex) lookup(fp uint64) (uint64, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, m := range x.slots {
		if seq, ok := m[fp]; ok {
			return seq, true
		}
	}
	return 0, false
}

// forget drops the slots entirely older than the horizon.
func (x *seenIndex) forget(now time.Time) {
	oldest := now.Add(-x.horizon).UnixNano()/int64(x.slotLen) - 1
	x.mu.Lock()
	defer x.mu.Unlock()
	for slot, m := range x.slots {
		if slot < oldest {
			x.entries.Add(-int64(len(m)))
			delete(x.slots, slot)
		}
	}
}

// tail keeps the index current until ctx ends. It marks the index ready once
// it has applied every event that existed when it started.
func (x *seenIndex) tail(ctx context.Context, js jetstream.JetStream) error {
	start := time.Now().Add(-x.horizon)
	c, err := js.OrderedConsumer(ctx, contract.StreamIngress, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{contract.SubjectCallback + ">", contract.SubjectSNS + ">"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
		HeadersOnly:    true,
	})
	if err != nil {
		return fmt.Errorf("dedup tail: %w", err)
	}
	if info := c.CachedInfo(); info != nil && info.NumPending == 0 {
		x.ready.Store(true)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		if fp, ok := fingerprint(m.Headers().Get(nats.MsgIdHdr)); ok {
			x.add(fp, md.Sequence.Stream, md.Timestamp)
		}
		if md.NumPending == 0 {
			x.ready.Store(true)
		}
	})
	if err != nil {
		return fmt.Errorf("dedup tail: %w", err)
	}
	defer cc.Stop()
	tick := time.NewTicker(x.slotLen)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			x.forget(now)
		}
	}
}
