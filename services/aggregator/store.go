package aggregator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// errConflict is returned by stateStore.save when the entry changed since it
// was loaded: another replica or a timer wrote it. The caller reloads and
// starts over.
var errConflict = errors.New("state changed concurrently")

// entry is the value stored under a key's token.
type entry struct {
	State jobs.State `json:"state"`
	// TimerAt is when the idle-timeout timer last armed for the key fires;
	// zero when none is pending (timers.go).
	TimerAt time.Time `json:"timer_at,omitzero"`
}

// stateStore reads and writes entries with compare-and-set.
type stateStore struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
}

// headerOpenJobs is set on every entry written: the number of open jobs the
// entry holds. The open_jobs gauge sums it over the last entry of every key
// (countOpenJobs), without reading the entries.
const headerOpenJobs = "sd-open-jobs"

// stateSubjectPrefix is the subject of a key's entries in the bucket's
// stream, KV_AGGREGATOR_STATE, before the key.
const stateSubjectPrefix = "$KV." + contract.BucketAggregatorState + "."

// load returns the entry of token and its revision, revision 0 when there is
// none yet.
func (s stateStore) load(ctx context.Context, token string) (entry, uint64, error) {
	var e entry
	kve, err := s.kv.Get(ctx, token)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return e, 0, nil
	case err != nil:
		return e, 0, fmt.Errorf("load state %s: %w", token, err)
	}
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return e, 0, fmt.Errorf("load state %s: %w", token, err)
	}
	return e, kve.Revision(), nil
}

// save writes e if token is still at revision rev (0: absent) and returns
// the new revision. It returns errConflict when it is not. It writes as
// kv.Create and kv.Update do (entries are never deleted, so a new key's
// subject is empty), with headerOpenJobs.
func (s stateStore) save(ctx context.Context, token string, e entry, rev uint64) (uint64, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("save state %s: %w", token, err)
	}
	msg := &nats.Msg{Subject: stateSubjectPrefix + token, Data: raw,
		Header: nats.Header{headerOpenJobs: []string{strconv.Itoa(len(e.State.Open))}}}
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(rev))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, fmt.Errorf("save state %s: %w", token, errConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("save state %s: %w", token, err)
	}
	return ack.Sequence, nil
}

// countOpenJobs sums headerOpenJobs over the last entry of every key, with
// a headers-only ordered consumer: one pass over the keys, no entry read.
func (s stateStore) countOpenJobs(ctx context.Context) (int, error) {
	stream, err := s.js.Stream(ctx, "KV_"+contract.BucketAggregatorState)
	if err != nil {
		return 0, fmt.Errorf("count open jobs: %w", err)
	}
	if stream.CachedInfo().State.Msgs == 0 {
		return 0, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{stateSubjectPrefix + ">"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, HeadersOnly: true,
	})
	if err != nil {
		return 0, fmt.Errorf("count open jobs: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return 0, fmt.Errorf("count open jobs: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	total := 0
	for {
		m, err := it.Next()
		if err != nil {
			return 0, fmt.Errorf("count open jobs: %w", err)
		}
		n, _ := strconv.Atoi(m.Headers().Get(headerOpenJobs))
		total += n
		meta, err := m.Metadata()
		if err != nil {
			return 0, fmt.Errorf("count open jobs: %w", err)
		}
		if meta.NumPending == 0 {
			return total, nil
		}
	}
}

// cached is an entry as a worker last loaded or saved it.
type cached struct {
	e   entry
	rev uint64
	// fresh is true when e was just read from the bucket.
	fresh bool
}

// stateCache keeps the entries of the keys this replica handles, so that a
// key's next message needs no read. A stale entry is harmless: its save fails
// with errConflict and the lane reloads. It is dropped whole when it reaches
// its size. Lanes share it; each uses only its own key's entry.
type stateCache struct {
	mu   sync.Mutex
	size int
	m    map[string]*cached
}

func (c *stateCache) get(token string) (*cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[token]
	return e, ok
}

func (c *stateCache) put(token string, e *cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= c.size && c.m[token] == nil {
		c.m = make(map[string]*cached, min(c.size, 1024))
	}
	c.m[token] = e
}

func (c *stateCache) forget(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, token)
}
