package aggregator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// errAcked is returned by index.prevOf for a message at or below the
// aggregator consumer's ack floor: it has been applied already.
var errAcked = errors.New("message below the ack floor")

// errBehind is returned by index.watermark when the index has not read
// INGRESS far enough yet; the caller retries later.
var errBehind = errors.New("key index behind INGRESS")

// index follows INGRESS with a headers-only ordered consumer, filtered like
// the aggregator consumer, from just above that consumer's ack floor. For
// every message with a job key it records the predecessor: the sequence of
// the previous message of the same key, 0 when there is none above the
// starting floor. A worker applies a message only once its key's State has
// applied the predecessor (LastSeq >= predecessor), so every key's messages
// are applied in INGRESS order whichever replica receives them and however
// often they are redelivered (docs/aggregator.md, "Ordering").
//
// Memory is bounded by the messages above the ack floor: entries at or below
// it are pruned when the floor is re-read (every pruneEvery), and reading
// pauses while more than maxWindow entries are held.
type index struct {
	js        jetstream.JetStream
	durable   jetstream.Consumer
	filter    []string
	cfg       jobs.Config
	maxWindow int

	mu        sync.Mutex
	moved     chan struct{} // closed and replaced whenever pos advances
	pos       uint64        // highest INGRESS sequence read
	posTime   time.Time     // its storage time
	movedAt   time.Time     // when pos last advanced, or the follower started
	floor     uint64        // the aggregator consumer's ack floor, last read
	delivered uint64        // the aggregator consumer's last delivered sequence, last read
	throttled bool          // reading paused for maxWindow
	prev      map[uint64]uint64
	last      map[string]uint64 // key token -> last sequence read
	follower  jetstream.Consumer
}

const pruneEvery = time.Second

// stallAfter is how long the follower may read nothing while the aggregator
// consumer has delivered messages beyond it before it is taken for stuck
// and re-created from where it stopped. An ordered consumer resets itself
// after missed heartbeats, but after its server was killed it was seen to
// wait for good in that reset (nats.go's ordered consumer, a stream leader
// SIGKILLed under load), and with it every worker waiting for the index.
const stallAfter = 3 * pullExpiry

// newIndex reads the consumer's ack floor and filter; the index starts
// reading just above the floor when run.
func newIndex(ctx context.Context, js jetstream.JetStream, durable jetstream.Consumer, cfg jobs.Config, maxWindow int) (*index, error) {
	info, err := durable.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("key index: consumer info: %w", err)
	}
	filter := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		filter = []string{info.Config.FilterSubject}
	}
	return &index{
		js: js, durable: durable, filter: filter, cfg: cfg, maxWindow: maxWindow,
		moved: make(chan struct{}), pos: info.AckFloor.Stream, floor: info.AckFloor.Stream,
		prev: map[uint64]uint64{}, last: map[string]uint64{},
	}, nil
}

// run reads INGRESS until ctx ends, re-creating its consumer after errors.
func (x *index) run(ctx context.Context, onErr func(error)) {
	go x.pruneLoop(ctx)
	for ctx.Err() == nil {
		if err := x.follow(ctx); err != nil && ctx.Err() == nil {
			onErr(err)
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

func (x *index) follow(ctx context.Context) error {
	x.mu.Lock()
	start := x.pos + 1
	x.mu.Unlock()
	cons, err := x.js.OrderedConsumer(ctx, contract.StreamIngress, jetstream.OrderedConsumerConfig{
		FilterSubjects: x.filter, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
		HeadersOnly: true,
	})
	if err != nil {
		return fmt.Errorf("key index: %w", err)
	}
	x.mu.Lock()
	x.follower, x.movedAt = cons, time.Now()
	x.mu.Unlock()
	it, err := cons.Messages(jetstream.PullMaxMessages(4096), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("key index: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	watchCtx, endWatch := context.WithCancel(ctx)
	defer endWatch()
	go x.watchStall(watchCtx, it.Stop)
	for {
		m, err := it.Next()
		if err != nil {
			return fmt.Errorf("key index: %w", err)
		}
		if err := x.add(m); err != nil {
			return err
		}
		x.throttle(ctx)
	}
}

// add records one message read by the follower.
func (x *index) add(m jetstream.Msg) error {
	meta, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("key index: %w", err)
	}
	seq := meta.Sequence.Stream
	k, _, ok := keyOf(m.Subject(), m.Headers(), x.cfg)
	x.mu.Lock()
	defer x.mu.Unlock()
	if seq <= x.pos {
		return nil // re-read after a reset
	}
	if ok {
		tok := k.Token()
		x.prev[seq] = x.last[tok]
		x.last[tok] = seq
	}
	x.pos, x.posTime, x.movedAt = seq, meta.Timestamp, time.Now()
	close(x.moved)
	x.moved = make(chan struct{})
	return nil
}

// watchStall calls stop when the follower is stuck (stalled) until ctx
// ends; follow then returns and run re-creates it.
func (x *index) watchStall(ctx context.Context, stop func()) {
	t := time.NewTicker(pullExpiry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if x.stalled(now) {
				stop()
				return
			}
		}
	}
}

// stalled tells whether, at now, the follower has read nothing for
// stallAfter although the aggregator consumer has delivered a message it
// has not read, and reading is not paused on purpose.
func (x *index) stalled(now time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return !x.throttled && x.delivered > x.pos && now.Sub(x.movedAt) >= stallAfter
}

// throttle blocks while the index holds more than maxWindow entries.
func (x *index) throttle(ctx context.Context) {
	for paused := false; ; paused = true {
		x.mu.Lock()
		n := len(x.prev)
		if n <= x.maxWindow {
			if paused { // the pause is not a stall
				x.throttled, x.movedAt = false, time.Now()
			}
			x.mu.Unlock()
			return
		}
		x.throttled = true
		x.mu.Unlock()
		x.prune(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (x *index) pruneLoop(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			x.prune(ctx)
		}
	}
}

// prune re-reads the ack floor and forgets what lies at or below it.
func (x *index) prune(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := x.durable.Info(ctx)
	if err != nil {
		return // keep the entries; the next prune retries
	}
	floor := info.AckFloor.Stream
	x.mu.Lock()
	defer x.mu.Unlock()
	x.delivered = max(x.delivered, info.Delivered.Stream)
	if floor <= x.floor {
		return
	}
	x.floor = floor
	for seq := range x.prev {
		if seq <= floor {
			delete(x.prev, seq)
		}
	}
	for tok, seq := range x.last {
		if seq <= floor {
			delete(x.last, tok)
		}
	}
}

// prevOf returns the predecessor of the message at seq, waiting until the
// index has read it. It returns errAcked for a message at or below the ack
// floor, and ctx's error when ctx ends first.
func (x *index) prevOf(ctx context.Context, seq uint64) (uint64, error) {
	for {
		x.mu.Lock()
		if x.pos >= seq {
			p, ok := x.prev[seq]
			floor := x.floor
			x.mu.Unlock()
			switch {
			case ok:
				return p, nil
			case seq <= floor:
				return 0, errAcked
			}
			return 0, fmt.Errorf("key index: message %d has no job key", seq)
		}
		ch := x.moved
		x.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// lastOf returns the last message of key token read by the index, 0 when
// there is none above the ack floor.
func (x *index) lastOf(token string) uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.last[token]
}

// watermark returns nil once the index has read every INGRESS message
// stored before w, and errBehind when it is still reading older ones. w must
// be in the past of the server's clock: when the index has read nothing
// stored at or after w, it asks the server whether anything is left to read.
func (x *index) watermark(ctx context.Context, w time.Time) error {
	x.mu.Lock()
	done, cons := !x.posTime.Before(w), x.follower
	x.mu.Unlock()
	if done {
		return nil
	}
	if cons == nil {
		return errBehind
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("key index: %w", err)
	}
	if info.NumPending > 0 {
		return errBehind
	}
	// Everything stored before the info request was delivered, up to
	// Delivered.Stream; wait until it has been read.
	target := info.Delivered.Stream
	for {
		x.mu.Lock()
		read, ch := x.pos >= target, x.moved
		x.mu.Unlock()
		if read {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return errBehind
		}
	}
}
