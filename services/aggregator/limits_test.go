package aggregator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// startWith runs one aggregator with its own connection and metrics
// registry until the test ends.
func (e *env) startWith(reg *prometheus.Registry, opts ...aggregator.Option) {
	e.t.Helper()
	nc, err := nats.Connect(e.srv.URL())
	if err != nil {
		e.t.Fatal(err)
	}
	svc, err := aggregator.New(context.Background(), e.cfg, natstest.JetStream(e.t, nc), reg, opts...)
	if err != nil {
		nc.Close()
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done; nc.Close() })
}

// consumerSettled waits until the aggregator consumer has nothing pending
// or unacknowledged and its ack floor is at the last message of INGRESS.
func (e *env) consumerSettled(timeout time.Duration) {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		e.t.Fatal(err)
	}
	natstest.Eventually(e.t, timeout, "the aggregator consumer settled", func() bool {
		info, err := s.Info(ctx)
		if err != nil {
			return false
		}
		c, err := e.js.Consumer(ctx, contract.StreamIngress, aggregator.ConsumerName)
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.AckFloor.Stream == info.State.LastSeq
	})
}

// metric returns the value of a gauge or counter, or the sample count and
// sum of a histogram, by name and labels.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (value, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), 0
			case m.Counter != nil:
				return m.GetCounter().GetValue(), 0
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

// TestJobOf1000TasksClosesAtTheLimits: an account that sends 1,000 tasks
// without pausing gets jobs of max_tasks (256) tasks, closed by task_limit,
// each next task opening the next job; its sdJobFinished closes the last
// one. JOBS equals the rebuild (what `replay jobs` compares), every task is
// in exactly one job, and the metrics show the tasks per job.
func TestJobOf1000TasksClosesAtTheLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	e.startWith(reg, aggregator.WithGaugesEvery(50*time.Millisecond))
	for i := range 1000 {
		e.callback("default", "sdTaskFinished", "a_busy", fmt.Sprintf("inv-%d", i/10), taskBody(i%7 != 0, fmt.Sprintf("img-%d", i)))
	}
	natstest.Eventually(t, 60*time.Second, "three jobs closed by the task limit", func() bool { return e.jobCount() == 3 })
	natstest.Eventually(t, 10*time.Second, "one open job", func() bool {
		open, _ := metric(t, reg, "sdevents_aggregator_open_jobs")
		return open == 1
	})
	e.callback("default", "sdJobFinished", "a_busy", "inv-99", taskBody(true, "final"))
	e.waitJobs(30*time.Second, 4)
	stored := e.jobsStored()
	var shape []string
	seen := map[string]int{}
	for _, r := range stored {
		shape = append(shape, fmt.Sprintf("%s/%d", r.ClosedBy, len(r.Tasks)))
		for _, task := range r.Tasks {
			seen[task.TaskID]++
		}
	}
	if got, want := strings.Join(shape, " "), "task_limit/256 task_limit/256 task_limit/256 job_event/232"; got != want {
		t.Fatalf("jobs %s, want %s", got, want)
	}
	if len(seen) != 1000 {
		t.Fatalf("%d distinct tasks in JOBS", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("task %s in %d jobs", id, n)
		}
	}
	want := e.rebuild(time.Now())
	if d := aggregator.Compare(want.Records, stored); !d.Clean() || d.Same != 4 || want.Open != 0 {
		t.Fatalf("JOBS differs from the rebuild (open %d): %+v", want.Open, d)
	}
	if n, sum := metric(t, reg, "sdevents_aggregator_job_tasks"); n != 4 || sum != 1000 {
		t.Fatalf("job_tasks histogram: %v jobs, %v tasks", n, sum)
	}
	natstest.Eventually(t, 10*time.Second, "no open job, nothing pending", func() bool {
		open, _ := metric(t, reg, "sdevents_aggregator_open_jobs")
		pending, _ := metric(t, reg, "sdevents_aggregator_consumer_pending", "consumer", aggregator.ConsumerName)
		return open == 0 && pending == 0
	})
	// The jobs handed their facts out in chunks; once closed, none is left.
	s, err := e.js.Stream(context.Background(), contract.StreamAggregatorFacts)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(context.Background()); err != nil || info.State.Msgs != 0 || info.State.LastSeq == 0 {
		t.Fatalf("fact stream after every job closed: %+v, %v", info.State, err)
	}
}

// stateWrites counts, per key, the size of every value written to the state
// bucket from now on.
type stateWrites struct {
	mu    sync.Mutex
	sizes map[string][]int
}

// watchState starts counting the writes to the state bucket, once the
// watcher sees them.
func (e *env) watchState() *stateWrites {
	e.t.Helper()
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, contract.BucketAggregatorState)
	if err != nil {
		e.t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = w.Stop() })
	sw := &stateWrites{sizes: map[string][]int{}}
	go func() {
		for u := range w.Updates() {
			if u == nil {
				continue
			}
			sw.mu.Lock()
			sw.sizes[u.Key()] = append(sw.sizes[u.Key()], len(u.Value()))
			sw.mu.Unlock()
		}
	}()
	if _, err := kv.Put(ctx, "watch-ready", []byte("x")); err != nil {
		e.t.Fatal(err)
	}
	natstest.Eventually(e.t, 10*time.Second, "the watcher running", func() bool {
		_, n := sw.largest("watch-ready")
		return n > 0
	})
	return sw
}

// largest returns the largest value written under key, and how many writes.
func (sw *stateWrites) largest(key string) (int, int) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	m := 0
	for _, n := range sw.sizes[key] {
		m = max(m, n)
	}
	return m, len(sw.sizes[key])
}

// TestStateBytesDoNotGrowWithTheJob: what a message costs in state writes
// does not depend on how many tasks its job holds. Three accounts' jobs get
// 10, 100 and 1,000 tasks (under a limit that keeps them open); the largest
// state value written for the job of 1,000 tasks stays within the counters
// and the facts a job keeps in its state (jobs.InlineBytes), and within
// twice that of the job of 100 (where exactly group commits cut the writes
// varies). Writing the whole job on every message (its size grows with each
// task) fails both, tenfold.
func TestStateBytesDoNotGrowWithTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Jobs.MaxTasks = 100_000
	writes := e.watchState()
	e.start()
	sizes := []int{10, 100, 1000}
	for _, n := range sizes {
		for i := range n {
			e.callback("default", "sdTaskFinished", fmt.Sprintf("a_%d", n), "inv", taskBody(true, fmt.Sprintf("img-%d", i)))
		}
	}
	e.consumerSettled(60 * time.Second)
	largest := map[int]int{}
	natstest.Eventually(t, 10*time.Second, "the watcher saw the writes", func() bool {
		for _, n := range sizes {
			if largest[n], _ = writes.largest(fmt.Sprintf("cb.default.a_%d", n)); largest[n] == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("largest state write at 10, 100, 1,000 tasks: %v bytes", largest)
	if largest[1000] > 2*largest[100] || largest[1000] > jobs.InlineBytes+1024 {
		t.Fatalf("largest state write at 10, 100, 1,000 tasks: %v bytes", largest)
	}
}

// TestMaxDurationClosesAJob: a job closes max_duration after it opened,
// however long its idle timeout, by the timer when nothing else comes. (The
// pure package's TestLimits checks the same with an injected clock, and a
// job noticed closed by its next task.)
func TestMaxDurationClosesAJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Jobs.MaxDuration = time.Second
	e.start(aggregator.WithTimerMargin(200 * time.Millisecond))
	e.callback("default", "sdTaskFinished", "a_long", "inv-1", taskBody(true, "img-1"))
	e.waitJobs(15*time.Second, 1)
	got := e.jobsStored()
	if len(got) != 1 {
		t.Fatalf("%d jobs", len(got))
	}
	if j := got[0]; j.ClosedBy != jobs.ClosedByMaxDuration || !j.FinishedAt.Equal(j.StartedAt.Add(time.Second)) {
		t.Fatalf("job closed by %s after %s", j.ClosedBy, j.FinishedAt.Sub(j.StartedAt))
	}
	if d := aggregator.Compare(e.rebuild(time.Now()).Records, got); !d.Clean() {
		t.Fatalf("differs from the rebuild: %+v", d)
	}
}

// hugeBody is an sdTaskFinished body listing n image ids and nothing else.
func hugeBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"success":true,"data":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"generatedImageId":"i%05d"}`, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// TestHugeImageListsDoNotBlockTheAccount: task results listing 30,000 image
// ids each keep their first max_images_per_task images and count the
// others; the job closes, the account's next job proceeds, and no message is
// delivered twice. (Before images were capped and job state bounded, the
// fifth such task made the state too large to store, and it was
// redelivered forever.)
func TestHugeImageListsDoNotBlockTheAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	redelivered := 0
	e.start(aggregator.WithFaults(func(uint64) {}, func(m jetstream.Msg) error {
		if meta, err := m.Metadata(); err == nil && meta.NumDelivered > 1 {
			mu.Lock()
			redelivered++
			mu.Unlock()
		}
		return m.Ack()
	}))
	body := hugeBody(30_000)
	for range 5 {
		e.callback("default", "sdTaskFinished", "a_many", "inv-1", body)
	}
	e.callback("default", "sdJobFinished", "a_many", "inv-1", taskBody(true))
	e.callback("default", "sdTaskFinished", "a_many", "inv-2", taskBody(true, "next"))
	e.callback("default", "sdJobFinished", "a_many", "inv-2", taskBody(true))
	e.waitJobs(60*time.Second, 2)
	e.consumerSettled(30 * time.Second)
	got := e.jobsStored()
	if len(got) != 2 || len(got[0].Tasks) != 5 || len(got[1].Tasks) != 1 {
		t.Fatalf("%d jobs: %+v", len(got), got)
	}
	for _, task := range got[0].Tasks {
		if len(task.Images) != 64 || task.ImagesDropped != 30_000-64 || task.Images[63].ImageID != "i00063" {
			t.Fatalf("task %s: %d images, %d dropped", task.TaskID, len(task.Images), task.ImagesDropped)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if redelivered != 0 {
		t.Fatalf("%d messages acknowledged after a redelivery", redelivered)
	}
	if d := aggregator.Compare(e.rebuild(time.Now()).Records, got); !d.Clean() {
		t.Fatalf("differs from the rebuild: %+v", d)
	}
}

// TestPoisonMessageIsBuried: a message that fails on every delivery is
// recorded once on sd.dead.aggregator, with its sequence and the reason,
// skipped in its key's state and terminated; the consumer moves on, and the
// account's job closes with its other tasks.
func TestPoisonMessageIsBuried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setMaxDeliver(4) // buried from the second delivery on (a third of the budget)
	e.callback("default", "sdTaskFinished", "a_poison", "inv-1", taskBody(true, "one"))
	poison := e.callback("default", "sdTaskFinished", "a_poison", "inv-1", taskBody(true, "two"))
	e.callback("default", "sdTaskFinished", "a_poison", "inv-1", taskBody(true, "three"))
	e.callback("default", "sdJobFinished", "a_poison", "inv-1", taskBody(true))

	var mu sync.Mutex
	attempts := 0
	reg := prometheus.NewRegistry()
	e.startWith(reg, aggregator.WithApplyFailure(func(seq uint64) error {
		if seq != poison {
			return nil
		}
		mu.Lock()
		attempts++
		mu.Unlock()
		return errors.New("injected failure")
	}))
	e.waitJobs(30*time.Second, 1)
	e.consumerSettled(30 * time.Second)

	dead := readAll(t, e.js, contract.StreamDead)
	if len(dead) != 1 {
		t.Fatalf("%d dead-letter records", len(dead))
	}
	var rec deadletter.Record
	if err := json.Unmarshal(dead[0].Data(), &rec); err != nil {
		t.Fatal(err)
	}
	if dead[0].Subject() != "sd.dead.aggregator" || rec.Consumer != aggregator.ConsumerName || rec.Stream != contract.StreamIngress ||
		rec.Sequence != poison || rec.Subject != "sd.callback.default.sdTaskFinished" || rec.Deliveries != 2 ||
		!strings.Contains(rec.Reason, "injected failure") {
		t.Fatalf("record on %s: %+v", dead[0].Subject(), rec)
	}
	got := e.jobsStored()
	if len(got) != 1 || len(got[0].Tasks) != 2 || got[0].ClosedBy != jobs.ClosedByJobEvent {
		t.Fatalf("jobs %+v", got)
	}
	if n, _ := metric(t, reg, deadletter.MetricName, "consumer", aggregator.ConsumerName); n != 1 {
		t.Fatalf("dead_letters_total %v", n)
	}

	// Nothing delivers the buried message again: later messages are
	// handled, and it is not tried once more.
	mu.Lock()
	before := attempts
	mu.Unlock()
	e.callback("default", "sdJobFinished", "a_other", "inv-2", taskBody(true))
	e.waitJobs(30*time.Second, 2)
	e.consumerSettled(30 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if attempts != before {
		t.Fatalf("the buried message was tried again: %d attempts, %d before", attempts, before)
	}
}

// TestPanickingMessageIsBuried: a message whose handling panics is treated
// as one that fails: the lane survives, the key's cached state is dropped,
// and the message ends on sd.dead.aggregator while the job closes.
func TestPanickingMessageIsBuried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setMaxDeliver(4)
	e.callback("default", "sdTaskFinished", "a_panic", "inv-1", taskBody(true, "one"))
	poison := e.callback("default", "sdTaskFinished", "a_panic", "inv-1", taskBody(true, "two"))
	e.callback("default", "sdJobFinished", "a_panic", "inv-1", taskBody(true))
	e.start(aggregator.WithApplyFailure(func(seq uint64) error {
		if seq == poison {
			panic("handler bug")
		}
		return nil
	}))
	e.waitJobs(30*time.Second, 1)
	e.consumerSettled(30 * time.Second)
	dead := readAll(t, e.js, contract.StreamDead)
	var rec deadletter.Record
	if len(dead) != 1 || json.Unmarshal(dead[0].Data(), &rec) != nil || rec.Sequence != poison || !strings.Contains(rec.Reason, "panic: handler bug") {
		t.Fatalf("%d records: %+v", len(dead), rec)
	}
	if got := e.jobsStored(); len(got) != 1 || len(got[0].Tasks) != 1 {
		t.Fatalf("jobs %+v", got)
	}
}

// TestPoisonTimerIsBuried: a fired idle-timeout timer that fails on every
// delivery is recorded once on sd.dead.aggregator-due after a third of its
// consumer's max_deliver, counted, and terminated; the consumer moves on:
// another key's timer closes its job, and the buried one is not tried
// again. Its key's job stays open until the key's next message.
func TestPoisonTimerIsBuried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Jobs.IdleTimeout = time.Second
	c, err := e.js.Consumer(t.Context(), contract.StreamAggregatorTimers, "aggregator-due")
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	cc.MaxDeliver = 4 // buried from the second delivery on
	if _, err := e.js.UpdateConsumer(t.Context(), contract.StreamAggregatorTimers, cc); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	fired := 0
	reg := prometheus.NewRegistry()
	e.startWith(reg, aggregator.WithTimerMargin(100*time.Millisecond), aggregator.WithFireFailure(func(token string) error {
		if token != "cb.default.a_stuck" {
			return nil
		}
		mu.Lock()
		fired++
		mu.Unlock()
		return errors.New("injected timer failure")
	}))
	e.callback("default", "sdTaskFinished", "a_stuck", "inv-1", taskBody(true, "one"))
	natstest.Eventually(t, 30*time.Second, "the timer buried", func() bool {
		n, _ := metric(t, reg, deadletter.MetricName, "consumer", "aggregator-due")
		return n == 1
	})
	dead := readAll(t, e.js, contract.StreamDead)
	var rec deadletter.Record
	if len(dead) != 1 || json.Unmarshal(dead[0].Data(), &rec) != nil {
		t.Fatalf("%d records", len(dead))
	}
	if dead[0].Subject() != "sd.dead.aggregator-due" || rec.Consumer != "aggregator-due" || rec.Stream != contract.StreamAggregatorTimers ||
		rec.Subject != "sdevents.aggregator.due.cb.default.a_stuck" || rec.Deliveries != 2 || !strings.Contains(rec.Reason, "injected timer failure") {
		t.Fatalf("record on %s: %+v", dead[0].Subject(), rec)
	}
	if e.jobCount() != 0 {
		t.Fatal("the stuck job closed")
	}

	// The consumer moves on: another key's timer closes its job.
	e.callback("default", "sdTaskFinished", "a_fine", "inv-2", taskBody(true, "two"))
	e.waitJobs(30*time.Second, 1)
	if got := e.jobsStored(); got[0].Account != "a_fine" || got[0].ClosedBy != jobs.ClosedByIdleTimeout {
		t.Fatalf("job %+v", got[0])
	}
	mu.Lock()
	before := fired
	mu.Unlock()
	// The stuck key's next message closes its open job.
	e.callback("default", "sdJobFinished", "a_stuck", "inv-1", taskBody(true))
	e.waitJobs(30*time.Second, 2)
	mu.Lock()
	defer mu.Unlock()
	if fired != before {
		t.Fatalf("the buried timer was tried again: %d, %d before", fired, before)
	}
	if n := len(readAll(t, e.js, contract.StreamDead)); n != 1 {
		t.Fatalf("%d records", n)
	}
}

// setMaxDeliver sets the aggregator consumer's max_deliver.
func (e *env) setMaxDeliver(n int) {
	e.t.Helper()
	ctx := context.Background()
	c, err := e.js.Consumer(ctx, contract.StreamIngress, aggregator.ConsumerName)
	if err != nil {
		e.t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	cc.MaxDeliver = n
	if _, err := e.js.UpdateConsumer(ctx, contract.StreamIngress, cc); err != nil {
		e.t.Fatal(err)
	}
}

// readAll returns every message of stream, in order.
func readAll(t *testing.T, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for uint64(len(out)) < info.State.Msgs {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestLargeJobsOnceAcrossReplicasKillsAndRedeliveries: jobs large enough to
// hand their facts out in chunks (tasks with large images, and jobs closed
// by the task limit) keep every guarantee across two replicas with dropped
// acks, commits slower than the ack wait and a replica killed and replaced:
// JOBS equals the rebuild and every task is in exactly one job.
func TestLargeJobsOnceAcrossReplicasKillsAndRedeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Jobs.MaxTasks = 12
	e.setAckWait(time.Second)

	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(5, 6))
	chance := func(p float64) bool { mu.Lock(); defer mu.Unlock(); return rng.Float64() < p }
	faults := aggregator.WithFaults(
		func(uint64) {
			if chance(0.02) {
				time.Sleep(1200 * time.Millisecond) // past the ack wait
			}
		},
		func(m jetstream.Msg) error {
			if chance(0.1) {
				return nil // the ack is lost
			}
			return m.Ack()
		})
	opts := []aggregator.Option{faults, aggregator.WithWorkers(4)}
	a := e.start(opts...)
	e.start(opts...)

	// Per account: jobs of 5 to 20 tasks with two 1.5 KB image URLs each
	// (a chunk every other task), closed by sdJobFinished, the longer ones
	// by the task limit first.
	long := strings.Repeat("x", 1500)
	accounts := []string{"a_one", "a_two", "a_three", "a_four", "a_five", "a_six"}
	order := rand.New(rand.NewPCG(7, 8))
	type step struct {
		acct, biz, inv string
		body           []byte
	}
	var steps [][]step
	tasks := 0
	for i, acct := range accounts {
		var s []step
		for j := range 3 {
			inv := fmt.Sprintf("%s-%d", acct, j)
			s = append(s, step{acct, "sdPreInvoke", inv, nil})
			n := 5 + 5*((i+j)%4)
			for k := range n {
				s = append(s, step{acct, "sdTaskFinished", inv, taskBody(k%5 != 0, fmt.Sprintf("%s-%d-a-%s", inv, k, long), fmt.Sprintf("%s-%d-b-%s", inv, k, long))})
				tasks++
			}
			s = append(s, step{acct, "sdJobFinished", inv, taskBody(true)})
		}
		steps = append(steps, s)
	}
	total := 0
	for _, s := range steps {
		total += len(s)
	}
	for published := 0; published < total; {
		i := order.IntN(len(steps))
		if len(steps[i]) == 0 {
			continue
		}
		st := steps[i][0]
		steps[i] = steps[i][1:]
		e.callback("default", st.biz, st.acct, st.inv, st.body)
		published++
		if published == total/3 {
			a.kill()
		}
		if published == 2*total/3 {
			e.start(opts...)
		}
	}

	want := e.rebuild(time.Now())
	if want.Open != 0 {
		t.Fatalf("oracle: %d jobs left open", want.Open)
	}
	e.waitJobs(90*time.Second, len(want.Records))
	e.consumerSettled(60 * time.Second)
	stored := e.jobsStored()
	if d := aggregator.Compare(want.Records, stored); !d.Clean() || len(stored) != len(want.Records) {
		t.Fatalf("JOBS (%d) differs from the rebuild (%d): missing %v, extra %v, different %v",
			len(stored), len(want.Records), d.Missing, d.Extra, d.Different)
	}
	seen := map[string]int{}
	limited := 0
	for _, r := range stored {
		if r.ClosedBy == jobs.ClosedByTaskLimit {
			limited++
		}
		for _, task := range r.Tasks {
			seen[task.TaskID]++
		}
	}
	if len(seen) != tasks || limited == 0 {
		t.Fatalf("%d distinct tasks in JOBS, want %d; %d jobs closed by the task limit", len(seen), tasks, limited)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("task %s in %d jobs", id, n)
		}
	}
}
