package archiver

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
)

// deadMsg names a message the archiver gives up on.
type deadMsg struct {
	Stream, Consumer, Subject string
	Seq, Deliveries           uint64
}

// deadLetter records a message the archiver gives up on: one whose last
// allowed delivery (the consumer's max_deliver) failed, one whose last
// delivery was never settled (a replica died holding it; JetStream's
// max-deliveries advisory reports it), or one that cannot be processed at
// all. It logs an error and counts it in sdevents_archiver_dead_letters_total;
// it is the one place where such messages are handed on. It does not touch
// the message itself.
func (s *Service) deadLetter(m deadMsg, reason string, cause error) {
	s.metrics.dead.WithLabelValues(m.Consumer).Inc()
	ev := s.log.Error().Str("stream", m.Stream).Str("consumer", m.Consumer).Uint64("seq", m.Seq).
		Uint64("deliveries", m.Deliveries).Str("reason", reason)
	if m.Subject != "" {
		ev = ev.Str("subject", m.Subject)
	}
	if cause != nil {
		ev = ev.AnErr("cause", cause)
	}
	ev.Msg("archiver dead letter")
}

// maxDeliveriesAdvisory is JetStream's advisory for a message whose last
// allowed delivery was not acknowledged in time.
const maxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."

// watchDeadLetters subscribes, in one queue group shared by every replica,
// to the max-deliveries advisories of the archiver's consumers, and records
// each such message with deadLetter. The caller unsubscribes.
func (s *Service) watchDeadLetters() ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for _, in := range s.intakes {
		info := in.cons.CachedInfo()
		subject := maxDeliveriesAdvisory + info.Stream + "." + info.Name
		sub, err := s.nc.QueueSubscribe(subject, "sdevents-archiver", func(m *nats.Msg) {
			var a struct {
				Stream     string `json:"stream"`
				Consumer   string `json:"consumer"`
				StreamSeq  uint64 `json:"stream_seq"`
				Deliveries uint64 `json:"deliveries"`
			}
			if err := json.Unmarshal(m.Data, &a); err != nil {
				s.log.Error().Err(err).Str("subject", m.Subject).Msg("archiver: unreadable advisory")
				return
			}
			s.deadLetter(deadMsg{Stream: a.Stream, Consumer: a.Consumer, Seq: a.StreamSeq, Deliveries: a.Deliveries},
				"delivery limit reached without an answer", nil)
		})
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return nil, fmt.Errorf("archiver: subscribe %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}
