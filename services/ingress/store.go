package ingress

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/httpserver"
)

// errIndexWarming is returned while the de-duplication index is being rebuilt
// after a start: long-horizon events cannot be checked yet (503, retried).
var errIndexWarming = errors.New("de-duplication index is warming up")

// Store writes events to INGRESS exactly once per de-duplication key.
//
// Two tiers keep an event single (docs/design.md, "De-duplication"):
//   - Nats-Msg-Id (= ce-id = the key) within the stream's duplicate window
//     (10 min) catches concurrent and quick retries inside JetStream itself,
//     atomically with the store;
//   - for events the platform retries for hours (horizon), the replica's
//     seenIndex, rebuilt from the stream, finds keys stored up to 7 h ago; a
//     hit is confirmed by reading the stored message.
type Store struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	seen    *seenIndex
	timeout time.Duration
	observe func(float64)
}

// Stored tells where an event is.
type Stored struct {
	Seq       uint64
	Duplicate bool
}

// Put stores msg, whose Nats-Msg-Id must be set to key. With horizon, the
// long-horizon index is consulted and updated. Errors wrap
// httpserver.ErrUnavailable: nothing can be promised, the client should retry.
func (s *Store) Put(ctx context.Context, msg *nats.Msg, key string, horizon bool) (Stored, error) {
	start := time.Now()
	defer func() { s.observe(time.Since(start).Seconds()) }()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	fp, hasFP := fingerprint(key)
	if horizon && hasFP {
		if seq, ok := s.seen.lookup(fp); ok {
			m, err := s.stream.GetMsg(ctx, seq)
			switch {
			case err == nil && m.Header.Get(nats.MsgIdHdr) == key:
				return Stored{Seq: seq, Duplicate: true}, nil
			case err != nil && !errors.Is(err, jetstream.ErrMsgNotFound):
				return Stored{}, fmt.Errorf("%w: %w: dedup check: %v", httpserver.ErrUnavailable, errStore, err)
			}
			// A fingerprint collision or an expired event: store it.
		}
		if !s.seen.ready.Load() {
			return Stored{}, fmt.Errorf("%w: %w", httpserver.ErrUnavailable, errIndexWarming)
		}
	}
	ack, err := s.publish(ctx, msg)
	if err != nil {
		return Stored{}, fmt.Errorf("%w: %w: publish: %v", httpserver.ErrUnavailable, errStore, err)
	}
	if horizon && hasFP {
		s.seen.add(fp, ack.Sequence, time.Now())
	}
	return Stored{Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// publish stores msg and returns its ack; a duplicate ack (Duplicate set)
// carries the sequence of the event stored first.
//
// A replicated stream answers a publish whose Nats-Msg-Id another publish is
// still storing (a twin racing on another connection or replica) with
// "duplicate message id is in process" rather than wait. That is no failure:
// publish waits a little and publishes again, until the first is stored (the
// answer is then its duplicate ack) or has failed (this one then stores the
// event), or ctx ends.
func (s *Store) publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		ack, err := s.js.PublishMsg(ctx, msg)
		if !inProcess(err) {
			return ack, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(pause):
		}
	}
}

// errCodeInProcess is JetStream's "duplicate message id is in process".
const errCodeInProcess jetstream.ErrorCode = 10158

// inProcess reports whether err says that another publish of the same
// Nats-Msg-Id is being stored.
func inProcess(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeInProcess
}
