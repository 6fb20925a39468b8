package aggregator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// The chunks of facts open jobs hand out of their state (jobs.Chunk) live in
// The facts of large jobs are kept in contract.StreamAggregatorFacts
// (streams/aggregator-facts.yaml), one subject per job:
// contract.SubjectAggregatorFact + job id. A job's subject is read when the
// job closes and purged once the state that closed it is stored.

// chunkMsg is the message of c: its facts, with Nats-Msg-Id c.ID(), so that
// storing it again (a redelivery) is a no-op within the stream's duplicate
// window; beyond it, jobs.Build counts each fact once.
func chunkMsg(c jobs.Chunk) (*nats.Msg, error) {
	data, err := json.Marshal(c.Facts)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.ID(), err)
	}
	msg := nats.NewMsg(contract.SubjectAggregatorFact + c.JobID)
	msg.Data = data
	msg.Header.Set(nats.MsgIdHdr, c.ID())
	return msg, nil
}

// storeChunks publishes chunks and returns once JetStream has stored every
// one, or with the first error.
func (s *Service) storeChunks(ctx context.Context, chunks []jobs.Chunk) error {
	acks := make([]jetstream.PubAckFuture, 0, len(chunks))
	for _, c := range chunks {
		msg, err := chunkMsg(c)
		if err != nil {
			return err
		}
		// The connection's context bounds the publishes awaiting their
		// ack: past its bound, wait for room as long as an operation may.
		ack, err := s.js.PublishMsgAsync(msg, jetstream.WithExpectStream(contract.StreamAggregatorFacts), jetstream.WithStallWait(s.opts.opTimeout))
		if err != nil {
			return fmt.Errorf("store %s: %w", c.ID(), err)
		}
		acks = append(acks, ack)
	}
	for i, ack := range acks {
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			return fmt.Errorf("store %s: %w", chunks[i].ID(), err)
		case <-ctx.Done():
			return fmt.Errorf("store %s: %w", chunks[i].ID(), ctx.Err())
		}
	}
	return nil
}

// readFacts returns the facts of the chunks stored for job id, with batched
// direct gets.
func (s *Service) readFacts(ctx context.Context, id string) ([]jobs.Fact, error) {
	var facts []jobs.Fact
	var bad error
	err := s.lookup.scanFrom(ctx, contract.StreamAggregatorFacts, contract.SubjectAggregatorFact+id, map[string]any{"seq": 1}, func(data []byte) {
		facts, bad = appendFacts(facts, data, bad)
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, fmt.Errorf("read facts of %s: %w", id, err)
	}
	return facts, nil
}

// readFactsFromLeader is readFacts as the stream leader answers, one request
// per message: the last resort when direct gets, which any current replica
// answers, keep missing some.
func (s *Service) readFactsFromLeader(ctx context.Context, id string) ([]jobs.Fact, error) {
	var facts []jobs.Fact
	var bad error
	for seq := uint64(1); ; {
		m, err := s.facts.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(contract.SubjectAggregatorFact+id))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read facts of %s: %w", id, err)
		}
		facts, bad = appendFacts(facts, m.Data, bad)
		seq = m.Sequence + 1
	}
	if bad != nil {
		return nil, fmt.Errorf("read facts of %s: %w", id, bad)
	}
	return facts, nil
}

// appendFacts appends the facts of a chunk message.
func appendFacts(facts []jobs.Fact, data []byte, bad error) ([]jobs.Fact, error) {
	var chunk []jobs.Fact
	if err := json.Unmarshal(data, &chunk); err != nil {
		return facts, errors.Join(bad, err)
	}
	return append(facts, chunk...), bad
}

// factRereads is how often a closing job's facts are read again when some
// are missing, before the leader is asked.
const factRereads = 3

// factsOf returns the facts of the job c closed besides those it still held:
// those of the chunks the group handed out (in memory) and, when that is not
// all of them, of the chunks stored. A fact missing from every read is
// reported by jobs.Build.
func (s *Service) factsOf(ctx context.Context, c jobs.Closing, group []jobs.Fact) ([]jobs.Fact, error) {
	if complete(c, group) {
		return group, nil
	}
	for try := 0; ; try++ {
		var read []jobs.Fact
		var err error
		if try < factRereads {
			read, err = s.readFacts(ctx, c.Job.ID)
		} else {
			read, err = s.readFactsFromLeader(ctx, c.Job.ID)
		}
		if err != nil {
			return nil, err
		}
		facts := append(read, group...)
		if complete(c, facts) || try == factRereads {
			return facts, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(10<<try) * time.Millisecond):
		}
	}
}

// complete reports whether facts and those c's job still held are every
// fact of the job.
func complete(c jobs.Closing, facts []jobs.Fact) bool {
	seen := make(map[uint64]bool, len(facts)+len(c.Job.Inline))
	for _, f := range c.Job.Inline {
		seen[f.Seq] = true
	}
	for _, f := range facts {
		if f.Seq >= c.Job.OpenSeq && f.Seq <= c.UpTo {
			seen[f.Seq] = true
		}
	}
	return len(seen) >= c.Job.Facts
}

// purgeFacts removes the subjects of closed jobs, whose state is stored.
// A failure leaves chunks that the stream's max_age removes; it is counted.
func (s *Service) purgeFacts(ctx context.Context, ids []string) {
	for _, id := range ids {
		if err := s.facts.Purge(ctx, jetstream.WithPurgeSubject(contract.SubjectAggregatorFact+id)); err != nil {
			s.metrics.purgeFailed.Inc()
			s.log.Debug().Err(err).Str("job", id).Msg("aggregator: purge facts")
		}
	}
}
