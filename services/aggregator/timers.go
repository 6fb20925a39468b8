package aggregator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// Idle timeouts are JetStream message schedules (streams/aggregator-timers.yaml):
// a key with open jobs has a schedule on contract.SubjectAggregatorTimer+token that makes
// the server publish the token on contract.SubjectAggregatorDue+token when it fires. The
// schedule lives in the stream, so it fires while no aggregator runs, and the
// due message waits in the stream for the next one.
const dueConsumer = "aggregator-due"

// timerAt is when the timer of a key whose earliest deadline is d fires: d
// rounded up to the second (the resolution of schedules) plus margin, so
// that the watermark of the firing, its time minus margin, is past d.
func timerAt(d time.Time, margin time.Duration) time.Time {
	if r := d.Truncate(time.Second); !r.Equal(d) {
		d = r.Add(time.Second)
	}
	return d.Add(margin)
}

// arm makes sure a timer will fire for e's earliest deadline, publishing a
// schedule before e is stored. A pending timer that fires earlier is kept:
// when it fires, fire re-arms for the deadline then in force. A schedule
// replaces the previous one of the key. arm records the time in e.TimerAt.
func (s *Service) arm(ctx context.Context, token string, e *entry) error {
	d, ok := jobs.Deadline(&e.State, s.cfg)
	if !ok {
		return nil // nothing open; a pending timer will fire harmlessly
	}
	at := timerAt(d, s.opts.timerMargin)
	if !e.TimerAt.IsZero() && !e.TimerAt.After(at) {
		return nil
	}
	msg := &nats.Msg{Subject: contract.SubjectAggregatorTimer + token, Data: []byte(token), Header: nats.Header{}}
	if _, err := s.js.PublishMsg(ctx, msg,
		jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(contract.SubjectAggregatorDue+token)); err != nil {
		return fmt.Errorf("arm timer %s: %w", token, err)
	}
	e.TimerAt = at
	s.metrics.armed.Inc()
	return nil
}

// dueToken returns the key token of a due message.
func dueToken(subject string) (string, bool) {
	tok, ok := strings.CutPrefix(subject, contract.SubjectAggregatorDue)
	return tok, ok && tok != ""
}
