package aggregator

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WithFaults injects faults: onCommit runs before a key's state is stored
// (it may sleep past the ack wait), onAck replaces the acknowledgement (it
// may drop it).
func WithFaults(onCommit func(seq uint64), onAck func(jetstream.Msg) error) Option {
	return func(o *options) { o.hooks.onCommit, o.hooks.onAck = onCommit, onAck }
}

// WithOpTimeout bounds each message's I/O.
func WithOpTimeout(d time.Duration) Option { return func(o *options) { o.opTimeout = d } }

// KeyOf exposes keyOf for tests.
var KeyOf = keyOf

// WithApplyFailure makes every INGRESS message for which fail returns an
// error fail before it is applied, as a handler that cannot handle it would.
func WithApplyFailure(fail func(seq uint64) error) Option {
	return func(o *options) { o.hooks.onApply = fail }
}

// WithFireFailure makes every fired timer of a key for which fail returns
// an error fail before it is handled.
func WithFireFailure(fail func(token string) error) Option {
	return func(o *options) { o.hooks.onFire = fail }
}

// WithGaugesEvery sets how often the gauges read from the server are
// updated (default 10 s).
func WithGaugesEvery(d time.Duration) Option { return func(o *options) { o.gaugesEvery = d } }
