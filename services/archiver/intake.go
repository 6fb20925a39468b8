package archiver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/deadletter"
)

// pullWait bounds one pull request: a request that a failing consumer
// leader drops is renewed within seconds.
const pullWait = 5 * time.Second

// ackTimeout bounds the wait for JetStream to confirm an acknowledgement.
const ackTimeout = 5 * time.Second

// errStopping: the replica is shutting down; the message goes to another
// replica at once.
var errStopping = errors.New("archiver: shutting down")

// errPoison: a message the archiver cannot act on however often it is
// delivered. It is buried: recorded on sd.dead.<consumer> and terminated.
var errPoison = errors.New("archiver: message cannot be processed")

// intake is one durable consumer the replica works on. It holds at most
// cap(slots) delivered messages at a time, in progress or queued in the
// dispatcher, and pulls only as many as it can hold, so no message waits
// unattended in a client buffer.
type intake struct {
	name    string
	stream  string
	cons    jetstream.Consumer
	ackWait time.Duration
	budget  deadletter.Budget // max_deliver
	slots   chan struct{}
	// open turns a delivered message into its jobs. No jobs and no error:
	// the message is acknowledged at once. An error: it is delivered again,
	// or buried when it wraps errPoison.
	open func(ctx context.Context, h *held) ([]*job, error)
	// level is the log level of a message's summary when all went well.
	level zerolog.Level
}

func (in *intake) release(n int) {
	for range n {
		<-in.slots
	}
}

// held is a delivered message whose jobs are queued or running. Once every
// job has finished it is acknowledged, or delivered again after a backoff
// when a job could not do its part.
type held struct {
	in    *intake
	msg   jetstream.Msg
	meta  *jetstream.MsgMetadata
	start time.Time
	stop  func() // ends the keep-alive

	mu    sync.Mutex
	left  int
	again error // the first reason to deliver the message again
	tally tally
}

// tally counts what happened to the images of a message, for its log line.
type tally struct {
	account, task      string
	images, duplicates int
	dropped            int
	stored, failed     int
	settled, retrying  int
	result             string // of a retry request
	problems           []string
}

func (h *held) add(f func(*tally)) {
	h.mu.Lock()
	f(&h.tally)
	h.mu.Unlock()
}

// pull admits messages of in until stop ends: it waits for a free slot,
// then asks for as many messages as there are free slots.
func (s *Service) pull(stop, work context.Context, in *intake, d *dispatcher) {
	failures := 0
	for {
		select {
		case in.slots <- struct{}{}:
		case <-stop.Done():
			return
		}
		n := 1
	more:
		for n < cap(in.slots) {
			select {
			case in.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		pctx, cancel := context.WithTimeout(stop, pullWait)
		batch, err := in.cons.Fetch(n, jetstream.FetchContext(pctx))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				s.admit(stop, work, in, msg, d)
			}
			err = batch.Error()
		}
		cancel()
		in.release(n - got)
		if stop.Err() != nil {
			return
		}
		if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
			errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			failures = 0
			continue
		}
		// The consumer or the connection is unavailable: try again soon.
		failures++
		if !errors.Is(err, nats.ErrConnectionClosed) {
			s.log.Warn().Err(err).Str("consumer", in.name).Msg("archiver pull")
		}
		select {
		case <-time.After(min(time.Duration(failures)*time.Second, 10*time.Second)):
		case <-stop.Done():
			return
		}
	}
}

// admit takes a delivered message in: it is kept alive while held, turned
// into jobs and queued, or settled at once when it has none.
func (s *Service) admit(stop, work context.Context, in *intake, msg jetstream.Msg, d *dispatcher) {
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Error().Err(err).Str("subject", msg.Subject()).Msg("archiver: not a JetStream message")
		in.release(1)
		return
	}
	h := &held{in: in, msg: msg, meta: meta, start: time.Now(), stop: func() {}}
	if stop.Err() != nil {
		h.again = errStopping
		s.settle(h)
		return
	}
	h.stop = s.keepAlive(msg, in.ackWait)
	jobs, err := in.open(work, h)
	if err != nil || len(jobs) == 0 {
		h.again = err
		s.settle(h)
		return
	}
	h.left = len(jobs)
	if !d.add(jobs) {
		h.left = 0
		h.again = errStopping
		s.settle(h)
	}
}

// finished records that one job of h is over, with the error that calls
// for another delivery (nil: it did its part), and settles h after its last
// job.
func (s *Service) finished(h *held, err error) {
	h.mu.Lock()
	if err != nil && h.again == nil {
		h.again = err
	}
	h.left--
	last := h.left == 0
	h.mu.Unlock()
	if last {
		s.settle(h)
	}
}

// settle ends the work on h: acknowledged when every job did its part;
// otherwise delivered again after a backoff (at once when the replica is
// shutting down), or, when this was its last allowed delivery or it cannot
// be processed, buried: recorded on sd.dead.<consumer> and terminated. It
// logs once per message and frees its slot.
func (s *Service) settle(h *held) {
	h.stop()
	defer h.in.release(1)
	h.mu.Lock()
	again, t := h.again, h.tally
	h.mu.Unlock()
	attempts := int(h.meta.NumDelivered)
	stopping := errors.Is(again, errStopping) || errors.Is(again, context.Canceled)
	giveUp := again != nil && !stopping && (errors.Is(again, errPoison) || h.in.budget.Last(h.meta.NumDelivered))
	lvl := h.in.level
	switch {
	case giveUp:
		lvl = zerolog.ErrorLevel
	case again != nil:
		lvl = zerolog.WarnLevel
	}
	ev := s.log.WithLevel(lvl).Str("consumer", h.in.name).Str("subject", h.msg.Subject()).
		Uint64("seq", h.meta.Sequence.Stream).Int("attempt", attempts)
	if t.account != "" {
		ev = ev.Str("account", t.account).Str("task_id", t.task)
	}
	if t.images > 0 {
		ev = ev.Int("images", t.images).Int("stored", t.stored).Int("failed", t.failed).
			Int("already_settled", t.settled).Int("retrying", t.retrying)
	}
	if t.duplicates > 0 {
		ev = ev.Int("duplicates", t.duplicates)
	}
	if t.dropped > 0 {
		ev = ev.Int("dropped", t.dropped)
	}
	if t.result != "" {
		ev = ev.Str("result", t.result)
	}
	if len(t.problems) > 0 {
		ev = ev.Strs("problems", t.problems)
	}
	ev = ev.Dur("took_ms", time.Since(h.start))
	switch {
	case again == nil:
		// Confirmed, so that a replica whose Run returned has nothing left
		// unacknowledged.
		ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		if err := h.msg.DoubleAck(ctx); err != nil {
			ev = ev.AnErr("ack", err)
		}
		cancel()
		ev.Msg("archiver message done")
	case stopping:
		_ = h.msg.Nak()
		ev.Err(again).Msg("archiver message handed back")
	case giveUp:
		reason := fmt.Sprintf("failed %d times: %v", attempts, again)
		if errors.Is(again, errPoison) {
			reason = again.Error()
		}
		ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		_, err := s.dead.Bury(ctx, h.msg, reason)
		cancel()
		if err != nil {
			// Delivered again and buried then; after its last delivery
			// the server gives up on it, and its advisory has it
			// recorded (watchDead).
			_ = h.msg.NakWithDelay(s.backoff.delay(attempts, s.now(), s.now().Add(s.backoff.max)))
			ev.Err(again).AnErr("bury", err).Msg("archiver message not buried")
			return
		}
		ev.Err(again).Msg("archiver message given up")
	default:
		delay := s.backoff.delay(attempts, s.now(), s.now().Add(s.backoff.max))
		_ = h.msg.NakWithDelay(delay)
		ev.Err(again).Dur("retry_in_ms", delay).Msg("archiver message delayed")
	}
}

// keepAlive tells JetStream every third of the ack wait that msg is still
// being worked on, until stop is called.
func (s *Service) keepAlive(msg jetstream.Msg, ackWait time.Duration) (stop func()) {
	every := ackWait / 3
	if every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}
