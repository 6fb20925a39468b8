// Package deadletter gives up on a JetStream message that its consumer cannot
// handle: it publishes an explicit record of the message on
// sd.dead.<consumer> (the DEAD stream, CONTRACT §6) and then terminates the
// message, so that the consumer moves on instead of retrying it forever, and
// an operator can find the message by its stream and sequence and read the
// reason.
//
// A consumer using it sets a finite max_deliver, reads it back with BudgetOf,
// and buries a message (Bury) when it decides to give up on it, at the latest
// on the last delivery the server makes (Budget.Last): after that one the
// server stops redelivering, and a message neither acknowledged nor buried
// would leave no trace.
//
// Bury is idempotent: the record's Nats-Msg-Id is derived from the consumer,
// stream and sequence, so two replicas burying the same message, or a retry
// after a lost acknowledgement, leave one record (within the DEAD stream's
// duplicate window).
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
)

// maxReason bounds the reason kept in a record, in bytes.
const maxReason = 1024

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
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	return Record{
		Consumer: meta.Consumer, Stream: meta.Stream, Sequence: meta.Sequence.Stream,
		Subject: m.Subject(), Deliveries: meta.NumDelivered, Reason: reason,
		StoredAt: meta.Timestamp.UTC(), At: now.UTC(),
	}, nil
}

// Publish stores r on sd.dead.<r.Consumer> and waits for JetStream's
// acknowledgement. It fails with ErrBadConsumer for a consumer name holding
// '.', '*', '>' or white space, and with the publish error otherwise.
func Publish(ctx context.Context, js jetstream.JetStream, r Record) error {
	if !token(r.Consumer) {
		return fmt.Errorf("%w: %q", ErrBadConsumer, r.Consumer)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("deadletter: %w", err)
	}
	msg := event.Message(contract.SubjectDead+r.Consumer, event.Meta{
		ID: r.ID(), Source: contract.SourcePrefix + r.Consumer, Type: contract.TypeDead,
		Time: r.At, ContentType: "application/json",
	}, data)
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithExpectStream(contract.StreamDead)); err != nil {
		return fmt.Errorf("deadletter: publish %s: %w", r.ID(), err)
	}
	return nil
}

// Bury publishes the record of m and then terminates m (AckTerm), so that
// the server never delivers it again. When the record cannot be published, m
// is left as it is and the error returned: the caller negatively
// acknowledges it and buries it on a later delivery (or, on the last one,
// terminates it anyway).
func Bury(ctx context.Context, js jetstream.JetStream, m jetstream.Msg, reason string) (Record, error) {
	r, err := RecordOf(m, reason, time.Now())
	if err != nil {
		return r, err
	}
	if err := Publish(ctx, js, r); err != nil {
		return r, err
	}
	if err := m.Term(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		return r, fmt.Errorf("deadletter: terminate %s: %w", r.ID(), err)
	}
	return r, nil
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
