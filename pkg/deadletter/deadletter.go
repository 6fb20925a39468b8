// Package deadletter gives up on a JetStream message that its consumer cannot
// handle: it publishes an explicit record of the message on
// sd.dead.<consumer> (the DEAD stream, CONTRACT §6) and then terminates the
// message, so that the consumer moves on instead of retrying it forever, and
// an operator can find the message by its stream and sequence and read the
// reason.
//
// A consumer using it sets a finite max_deliver, reads it back with BudgetOf,
// and buries a message (Recorder.Bury) when it decides to give up on it, at
// the latest on the last delivery the server makes (Budget.Last). A last
// delivery that nobody settles — the replica holding it stopped, or could not
// store the record — makes the server give up on the message by itself and
// publish a max-deliveries advisory; Recorder.Watch records those, so every
// message given up on has its record.
//
// Recording is idempotent: the record's Nats-Msg-Id is derived from the
// consumer, stream and sequence, so two replicas burying the same message, a
// retry after a lost acknowledgement, or an advisory after a bury leave one
// record (within the DEAD stream's duplicate window), counted once in
// sdevents_dead_letters_total{consumer}.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
)

// MetricName is the counter of records stored, by consumer, shared by every
// service of a process.
const MetricName = "sdevents_dead_letters_total"

// AdvisoryPrefix starts the subject of JetStream's advisory for a message
// whose last allowed delivery was not settled in time; <stream>.<consumer>
// follows.
const AdvisoryPrefix = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."

// QueueGroup is the queue group in which every replica of every service
// receives the advisories, so that one of them records each.
const QueueGroup = "sdevents-deadletter"

// ReasonUnanswered is the reason of a record made from an advisory.
const ReasonUnanswered = "delivery limit reached without an answer"

// maxReason bounds the reason kept in a record, in bytes.
const maxReason = 1024

// publishTimeout bounds the recording of one advisory.
const publishTimeout = 10 * time.Second

// ErrBadConsumer is returned for a consumer name that cannot be a subject
// token; it is a programming error.
var ErrBadConsumer = errors.New("deadletter: consumer name is not a subject token")

// Record is the data of a dead-letter event: which message was given up, by
// whom, after how many deliveries and why. It never holds the message's data
// or headers: the message stays in its stream, at Sequence.
type Record struct {
	Consumer   string    `json:"consumer"`
	Stream     string    `json:"stream"`
	Sequence   uint64    `json:"sequence"`
	Subject    string    `json:"subject"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
	StoredAt   time.Time `json:"stored_at"`
	At         time.Time `json:"at"`
}

// ID returns the record's ce-id and Nats-Msg-Id:
// "dead-<consumer>-<stream>-<sequence>".
func (r Record) ID() string {
	return "dead-" + r.Consumer + "-" + r.Stream + "-" + strconv.FormatUint(r.Sequence, 10)
}

// RecordOf describes m, delivered by a consumer, with reason. Reason is cut
// to 1 KiB; it must not hold secrets (error messages of the consumer's own
// code are fine, message data is not).
func RecordOf(m jetstream.Msg, reason string, now time.Time) (Record, error) {
	meta, err := m.Metadata()
	if err != nil {
		return Record{}, fmt.Errorf("deadletter: %w", err)
	}
	return Record{
		Consumer: meta.Consumer, Stream: meta.Stream, Sequence: meta.Sequence.Stream,
		Subject: m.Subject(), Deliveries: meta.NumDelivered, Reason: cut(reason),
		StoredAt: meta.Timestamp.UTC(), At: now.UTC(),
	}, nil
}

// Durable names a durable consumer: its stream and its name.
type Durable struct {
	Stream, Name string
}

// Recorder stores the records of one service's consumers and counts them in
// sdevents_dead_letters_total{consumer}. It is safe for concurrent use.
type Recorder struct {
	js    jetstream.JetStream
	count *prometheus.CounterVec
	now   func() time.Time
}

// NewRecorder returns a Recorder that publishes with js and counts in reg:
// the services of one process share the counter (the one registered first
// is used). consumers are the consumer names whose counters start at 0, so
// that a first record shows as an increase. reg may be nil: the counter is
// then not exported. It fails when reg holds another metric of that name.
func NewRecorder(js jetstream.JetStream, reg prometheus.Registerer, consumers ...string) (*Recorder, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricName,
		Help: "Messages given up on and recorded on sd.dead.<consumer>, by consumer; each message is counted once, whatever the replicas.",
	}, []string{"consumer"})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			existing, ok := c, false
			if errors.As(err, &dup) {
				existing, ok = dup.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				return nil, fmt.Errorf("deadletter: metrics: %w", err)
			}
			c = existing
		}
	}
	for _, name := range consumers {
		c.WithLabelValues(name)
	}
	return &Recorder{js: js, count: c, now: time.Now}, nil
}

// Publish stores r on sd.dead.<r.Consumer> and waits for JetStream's
// acknowledgement. It reports whether the record is new (not a duplicate of
// one stored before), and counts it then. It fails with ErrBadConsumer for a
// consumer name holding '.', '*', '>' or white space, and with the publish
// error otherwise.
func (rec *Recorder) Publish(ctx context.Context, r Record) (bool, error) {
	if !token(r.Consumer) {
		return false, fmt.Errorf("%w: %q", ErrBadConsumer, r.Consumer)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("deadletter: %w", err)
	}
	msg := event.Message(contract.SubjectDead+r.Consumer, event.Meta{
		ID: r.ID(), Source: contract.SourcePrefix + r.Consumer, Type: contract.TypeDead,
		Time: r.At, ContentType: "application/json",
	}, data)
	ack, err := rec.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(contract.StreamDead))
	if err != nil {
		return false, fmt.Errorf("deadletter: publish %s: %w", r.ID(), err)
	}
	if ack.Duplicate {
		return false, nil
	}
	rec.count.WithLabelValues(r.Consumer).Inc()
	return true, nil
}

// Bury publishes the record of m with reason and then terminates m
// (AckTerm), so that the server never delivers it again. When the record
// cannot be published, m is left as it is and the error returned: the caller
// negatively acknowledges it, and buries it on a later delivery; on the last
// delivery the server then gives up on it by itself, and Watch records it.
func (rec *Recorder) Bury(ctx context.Context, m jetstream.Msg, reason string) (Record, error) {
	r, err := RecordOf(m, reason, rec.now())
	if err != nil {
		return r, err
	}
	if _, err := rec.Publish(ctx, r); err != nil {
		return r, err
	}
	if err := m.Term(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		return r, fmt.Errorf("deadletter: terminate %s: %w", r.ID(), err)
	}
	return r, nil
}

// advisory is the part of JetStream's max-deliveries advisory that a record
// needs.
type advisory struct {
	Time       time.Time `json:"timestamp"`
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
}

// Watch subscribes on nc, in QueueGroup, to the max-deliveries advisories of
// the durable consumers ds, and records each message they name with
// ReasonUnanswered: the server gave up on it after a last delivery nobody
// settled. The record's subject and storage time are read from the message
// when it is still in its stream. report is called, from the subscription's
// goroutine, for every new record (err nil) and every advisory that could
// not be recorded; a duplicate of a record stored before is not reported.
// The returned stop unsubscribes. Watch fails when it cannot subscribe.
func (rec *Recorder) Watch(nc *nats.Conn, ds []Durable, report func(Record, error)) (stop func(), err error) {
	var subs []*nats.Subscription
	stop = func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	for _, d := range ds {
		subject := AdvisoryPrefix + d.Stream + "." + d.Name
		sub, err := nc.QueueSubscribe(subject, QueueGroup, func(m *nats.Msg) {
			ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
			defer cancel()
			r, err := rec.fromAdvisory(ctx, m.Data)
			if err == nil {
				var fresh bool
				if fresh, err = rec.Publish(ctx, r); err == nil && !fresh {
					return
				}
			}
			report(r, err)
		})
		if err != nil {
			stop()
			return nil, fmt.Errorf("deadletter: subscribe %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	return stop, nil
}

// fromAdvisory makes the record of the message a max-deliveries advisory
// names.
func (rec *Recorder) fromAdvisory(ctx context.Context, data []byte) (Record, error) {
	var a advisory
	if err := json.Unmarshal(data, &a); err != nil {
		return Record{}, fmt.Errorf("deadletter: advisory: %w", err)
	}
	if a.Time.IsZero() {
		a.Time = rec.now()
	}
	r := Record{Consumer: a.Consumer, Stream: a.Stream, Sequence: a.StreamSeq, Deliveries: a.Deliveries,
		Reason: ReasonUnanswered, At: a.Time.UTC()}
	if s, err := rec.js.Stream(ctx, a.Stream); err == nil {
		if m, err := s.GetMsg(ctx, a.StreamSeq); err == nil {
			r.Subject, r.StoredAt = m.Subject, m.Time.UTC()
		}
	}
	return r, nil
}

// cut bounds a reason to maxReason bytes, on a rune boundary.
func cut(reason string) string {
	if len(reason) <= maxReason {
		return reason
	}
	n := maxReason
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}

// Budget is a consumer's delivery budget: the max_deliver of its
// configuration. The zero Budget (max_deliver -1 or 0) is unlimited.
type Budget struct {
	MaxDeliver int
}

// BudgetOf returns the budget of a consumer configuration.
func BudgetOf(c jetstream.ConsumerConfig) Budget { return Budget{MaxDeliver: c.MaxDeliver} }

// Limited reports whether the server stops delivering a message at some
// point.
func (b Budget) Limited() bool { return b.MaxDeliver > 0 }

// Last reports whether the n-th delivery of a message is the last one the
// server makes: after it, the message must be acknowledged or buried.
func (b Budget) Last(n uint64) bool { return b.Limited() && n >= uint64(b.MaxDeliver) }

// Share returns the delivery from which a message that keeps failing should
// be buried when it may take only the fraction num/den of the budget (at
// least 2 deliveries when the budget allows it), and 0 for an unlimited
// budget. A consumer whose messages wait for one another keeps the rest of
// the budget for the waiting ones.
func (b Budget) Share(num, den int) uint64 {
	if !b.Limited() || den <= 0 {
		return 0
	}
	n := (b.MaxDeliver*num + den - 1) / den
	n = max(n, min(2, b.MaxDeliver))
	return uint64(min(n, b.MaxDeliver))
}

// token reports whether s is one subject token.
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' || c == '*' || c == '>' || c <= ' ' || c >= 0x7f:
			return false
		}
	}
	return true
}
