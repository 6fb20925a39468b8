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

// jsErrDuplicateInProcess is nats-server's answer, on a replicated stream, to
// a publish whose Nats-Msg-Id belongs to a message proposed but not stored
// yet (409, err_code 10158): a twin of this request is being stored.
const jsErrDuplicateInProcess jetstream.ErrorCode = 10158

// publish publishes msg; while its id is being stored by a twin, it
// publishes again after a short pause, until the server acknowledges it as
// a duplicate of the stored message (or stores it, if the twin's store
// failed) or ctx ends.
func (s *Store) publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	for pause := time.Millisecond; ; pause = min(2*pause, 32*time.Millisecond) {
		ack, err := s.js.PublishMsg(ctx, msg)
		var apiErr *jetstream.APIError
		if err == nil || !errors.As(err, &apiErr) || apiErr.ErrorCode != jsErrDuplicateInProcess {
			return ack, err
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil, err
		}
	}
}
