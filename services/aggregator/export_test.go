package aggregator

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WithFaults injects faults: onCommit runs before a key's state is stored
// (it may sleep past the ack wait), onAck replaces the acknowledgement (it
// may drop it).
func WithFaults(onCommit func(seq uint64), onAck func(jetstream.Msg) error) Option {
	return func(o *options) { o.hooks = hooks{onCommit: onCommit, onAck: onAck} }
}

// WithOpTimeout bounds each message's I/O.
func WithOpTimeout(d time.Duration) Option { return func(o *options) { o.opTimeout = d } }

// KeyOf exposes keyOf for tests.
var KeyOf = keyOf
