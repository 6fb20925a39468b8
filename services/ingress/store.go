package ingress

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/httpserver"
)

// Store writes events to INGRESS exactly once per de-duplication key.
//
// Two tiers keep an event single (docs/design.md, "De-duplication"):
//   - Nats-Msg-Id (= ce-id = the key) within the stream's duplicate window
//     (10 min) catches concurrent and quick retries inside JetStream itself;
//   - for events the platform retries for hours (Horizon), the INGRESS_DEDUP
//     bucket remembers key → stream sequence for its TTL (7 h). It is read
//     before publishing and written after the ack; a crash between the two is
//     covered by the duplicate window, since the next retry comes within it.
type Store struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
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
	if horizon {
		e, err := s.kv.Get(ctx, key)
		switch {
		case err == nil && len(e.Value()) == 8:
			return Stored{Seq: binary.BigEndian.Uint64(e.Value()), Duplicate: true}, nil
		case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
			return Stored{}, fmt.Errorf("%w: %w: dedup lookup: %v", httpserver.ErrUnavailable, errStore, err)
		}
	}
	ack, err := s.js.PublishMsg(ctx, msg)
	if err != nil {
		return Stored{}, fmt.Errorf("%w: %w: publish: %v", httpserver.ErrUnavailable, errStore, err)
	}
	if horizon {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], ack.Sequence)
		if _, err := s.kv.Put(ctx, key, v[:]); err != nil {
			return Stored{}, fmt.Errorf("%w: %w: dedup record: %v", httpserver.ErrUnavailable, errStore, err)
		}
	}
	return Stored{Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}
