package aggregator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// ReplayResult is what Replay rebuilt from INGRESS.
type ReplayResult struct {
	// Records are the jobs closed, in the order they closed. Credits and
	// archive URIs are left empty.
	Records []jobs.Record
	// Open is the number of jobs still open at the end.
	Open int
	// Events is the number of INGRESS messages read.
	Events uint64
}

// Replay rebuilds every job record from the beginning of INGRESS up to its
// last message when Replay starts, with fresh in-memory states and the same
// rules as the service: the messages the aggregator consumer would read, in
// order, each applied with jobs.Step (or jobs.Skip). It ends with jobs.Tick
// at now, which must be a watermark as for the service: the current time
// minus the timer margin reproduces what a caught-up service has closed.
// progress, when not nil, is called every 1024 messages and at the end with
// the messages read and the total. It reads through an ordered consumer and
// changes nothing.
//
// Keys are independent, so the reader hands each message to one of
// GOMAXPROCS shards by its key; a shard applies its keys' messages in INGRESS
// order. The records are then put back in the order they closed.
func Replay(ctx context.Context, js jetstream.JetStream, cfg jobs.Config, now time.Time, progress func(read, total uint64)) (ReplayResult, error) {
	var res ReplayResult
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	filter, err := consumerFilter(ctx, js)
	if err != nil {
		return res, err
	}
	shards := make([]*replayShard, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range shards {
		sh := &replayShard{cfg: cfg, in: make(chan []replayMsg, 4), states: map[jobs.Key]*jobs.State{}}
		shards[i] = sh
		wg.Go(sh.run)
	}
	seed := maphash.MakeSeed()
	batches := make([][]replayMsg, len(shards))
	flush := func(i int) {
		if len(batches[i]) > 0 {
			shards[i].in <- batches[i]
			batches[i] = make([]replayMsg, 0, replayBatch)
		}
	}
	err = readAll(ctx, js, contract.StreamIngress, filter, false, progress, func(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
		res.Events++
		k, kind, ok := keyOf(m.Subject(), m.Headers(), cfg)
		if !ok {
			return nil
		}
		i := int(maphash.Comparable(seed, k) % uint64(len(shards)))
		batches[i] = append(batches[i], replayMsg{key: k, kind: kind, msg: m, seq: meta.Sequence.Stream, at: meta.Timestamp})
		if len(batches[i]) >= replayBatch {
			flush(i)
		}
		return nil
	})
	for i, sh := range shards {
		if err == nil {
			flush(i)
		}
		close(sh.in)
	}
	wg.Wait()
	if err != nil {
		return res, fmt.Errorf("replay jobs: %w", err)
	}
	var closed []replayRecord
	for _, sh := range shards {
		if sh.err != nil {
			return res, fmt.Errorf("replay jobs: %w", sh.err)
		}
		closed = append(closed, sh.closed...)
	}
	// Each shard's records are in order; a message's records stay together.
	slices.SortStableFunc(closed, func(a, b replayRecord) int { return cmp.Compare(a.seq, b.seq) })
	res.Records = make([]jobs.Record, 0, len(closed))
	for _, r := range closed {
		res.Records = append(res.Records, r.rec)
	}
	for _, sh := range shards {
		for _, st := range sh.states {
			recs, err := sh.book.Tick(st, now, cfg)
			if err != nil {
				return res, fmt.Errorf("replay jobs: %w", err)
			}
			res.Records = append(res.Records, recs...)
			res.Open += len(st.Open)
		}
	}
	return res, nil
}

// replayBatch is the number of messages the reader hands a shard at once.
const replayBatch = 256

// replayMsg is an INGRESS message with a job key, for a replay shard.
type replayMsg struct {
	key  jobs.Key
	kind jobs.Kind
	msg  jetstream.Msg
	seq  uint64
	at   time.Time
}

// replayRecord is a record closed by the message at seq.
type replayRecord struct {
	seq uint64
	rec jobs.Record
}

// replayShard applies the messages of the keys it owns, in the order it
// receives them, with the facts of their open jobs in memory.
type replayShard struct {
	cfg    jobs.Config
	in     chan []replayMsg
	states map[jobs.Key]*jobs.State
	book   jobs.Book
	closed []replayRecord
	err    error
}

func (sh *replayShard) run() {
	for batch := range sh.in {
		for _, m := range batch {
			if sh.err == nil {
				sh.err = sh.apply(m)
			}
		}
	}
}

// apply is what the service does with one message (worker.go), in memory.
func (sh *replayShard) apply(m replayMsg) error {
	st := sh.states[m.key]
	if st == nil {
		st = &jobs.State{}
		sh.states[m.key] = st
	}
	obs, readable := observe(m.key, m.kind, m.msg.Headers(), m.msg.Data(), m.seq, m.at)
	var recs []jobs.Record
	var err error
	if readable {
		recs, _, err = sh.book.Step(st, obs, sh.cfg)
	}
	if !readable || err != nil {
		_, err = jobs.Skip(st, m.key, m.seq)
	}
	for _, r := range recs {
		sh.closed = append(sh.closed, replayRecord{seq: m.seq, rec: r})
	}
	return err
}

// ReadJobs returns every record in JOBS, in stream order.
func ReadJobs(ctx context.Context, js jetstream.JetStream, progress func(read, total uint64)) ([]jobs.Record, error) {
	var out []jobs.Record
	err := readAll(ctx, js, contract.StreamJobs, nil, false, progress, func(m jetstream.Msg, _ *jetstream.MsgMetadata) error {
		var r jobs.Record
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return fmt.Errorf("job record %s: %w", m.Subject(), err)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read jobs: %w", err)
	}
	return out, nil
}

// consumerFilter returns the filter subjects of the aggregator consumer.
func consumerFilter(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	c, err := js.Consumer(ctx, contract.StreamIngress, ConsumerName)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", ConsumerName, err)
	}
	cfg := c.CachedInfo().Config
	if cfg.FilterSubject != "" {
		return []string{cfg.FilterSubject}, nil
	}
	return cfg.FilterSubjects, nil
}

// readAll calls fn for every message of stream matching filter (all when
// empty), in order, up to the last one stored when it starts.
func readAll(ctx context.Context, js jetstream.JetStream, stream string, filter []string, headersOnly bool,
	progress func(read, total uint64), fn func(jetstream.Msg, *jetstream.MsgMetadata) error) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		report(progress, 0, 0)
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filter, HeadersOnly: headersOnly})
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(8192))
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	if ci, err := cons.Info(ctx); err == nil && ci.NumPending == 0 {
		report(progress, 0, 0)
		return nil // nothing matches the filter
	}
	var read, total uint64
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("stream %s: %w", stream, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		read++
		total = read + meta.NumPending
		if err := fn(m, meta); err != nil {
			return err
		}
		if read%1024 == 0 {
			report(progress, read, total)
		}
		if meta.NumPending == 0 || meta.Sequence.Stream >= last {
			report(progress, read, total)
			return nil
		}
	}
}

func report(progress func(read, total uint64), read, total uint64) {
	if progress != nil {
		progress(read, total)
	}
}

// Diff compares rebuilt job records with the stored ones, by job id.
type Diff struct {
	// Missing are rebuilt jobs JOBS does not hold; Extra are stored jobs
	// the rebuild did not produce; Different are jobs whose records differ.
	Missing, Extra, Different []string
	// Same is the number of jobs that match.
	Same int
}

// Clean reports whether rebuilt and stored records agree.
func (d Diff) Clean() bool { return len(d.Missing)+len(d.Extra)+len(d.Different) == 0 }

// Compare compares rebuilt and stored records, ignoring credits and archive
// URIs: those depend on what the QUOTA and ARCHIVE streams held when the job
// closed, not on INGRESS.
func Compare(rebuilt, stored []jobs.Record) Diff {
	var d Diff
	have := map[string][]byte{}
	for _, r := range stored {
		have[r.JobID] = canonical(r)
	}
	seen := map[string]bool{}
	for _, r := range rebuilt {
		seen[r.JobID] = true
		s, ok := have[r.JobID]
		switch {
		case !ok:
			d.Missing = append(d.Missing, r.JobID)
		case !bytes.Equal(s, canonical(r)):
			d.Different = append(d.Different, r.JobID)
		default:
			d.Same++
		}
	}
	for id := range have {
		if !seen[id] {
			d.Extra = append(d.Extra, id)
		}
	}
	slices.Sort(d.Extra)
	return d
}

// canonical is r's JSON without credits and archive URIs.
func canonical(r jobs.Record) []byte {
	r.Credits = jobs.Credits{}
	r.InvokeIDs = nil
	strip := func(in []jobs.Image) []jobs.Image {
		out := append([]jobs.Image{}, in...)
		for i := range out {
			out[i].URI = ""
		}
		return out
	}
	r.Images = strip(r.Images)
	tasks := slices.Clone(r.Tasks)
	for i := range tasks {
		tasks[i].Images = strip(tasks[i].Images)
	}
	r.Tasks = tasks
	r.StartedAt, r.FinishedAt = r.StartedAt.UTC(), r.FinishedAt.UTC()
	b, _ := json.Marshal(r)
	return b
}
