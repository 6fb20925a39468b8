package aggregator_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// TestJobsOnceAcrossReplicasKillsAndRedeliveries runs two replicas over the
// same consumer while callbacks and SNS results arrive, with dropped acks
// and commits slower than the ack wait (so a message is redelivered to the
// other replica while the first still applies it), kills one replica
// mid-stream and restarts it. JOBS must then hold exactly the records the
// pure jobs package computes from INGRESS, each once, and every task in
// exactly one of them.
func TestJobsOnceAcrossReplicasKillsAndRedeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setAckWait(time.Second)

	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
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

	// The workload: per account, jobs of 1-3 tasks closed by sdJobFinished,
	// interleaved across accounts; standalone SNS tasks with repeats.
	type script struct{ steps []func() }
	accounts := []string{"a_one", "a_two", "a_three", "a_four", "a_five"}
	var scripts []*script
	tasks := 0
	for i, acct := range accounts {
		s := &script{}
		for j := range 6 {
			inv := acct + "-inv" + string(rune('a'+j))
			s.steps = append(s.steps, func() { e.callback("default", "sdPreInvoke", acct, inv, nil) })
			n := 1 + (i+j)%3
			for k := range n {
				img := inv + "-" + string(rune('0'+k))
				s.steps = append(s.steps, func() { e.callback("default", "sdTaskFinished", acct, inv, taskBody(k%2 == 0, img)) })
				tasks++
			}
			s.steps = append(s.steps, func() { e.callback("default", "sdJobFinished", acct, inv, taskBody(true)) })
		}
		scripts = append(scripts, s)
	}
	snsTasks := 0
	for i := range 10 {
		s := &script{}
		id := "task-" + string(rune('a'+i))
		s.steps = append(s.steps,
			func() { e.sns("eks", "_", map[string]any{"id": id, "status": "running"}) },
			func() {
				e.sns("eks", "_", map[string]any{"id": id, "status": "completed", "result": true, "image_url": []string{"s3://out/" + id + ".png"}})
			},
			func() { e.sns("eks", "_", map[string]any{"id": id, "status": "completed", "result": true}) },
		)
		snsTasks++
		scripts = append(scripts, s)
	}
	total := 0
	for _, s := range scripts {
		total += len(s.steps)
	}

	order := rand.New(rand.NewPCG(3, 4)) // the faults' rng is shared with the replicas
	published := 0
	for published < total {
		s := scripts[order.IntN(len(scripts))]
		if len(s.steps) == 0 {
			continue
		}
		s.steps[0]()
		s.steps = s.steps[1:]
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
	if got := len(want.Records); got != len(accounts)*6+snsTasks {
		t.Fatalf("oracle: %d jobs, want %d", got, len(accounts)*6+snsTasks)
	}
	e.waitJobs(60*time.Second, len(want.Records))
	time.Sleep(2 * time.Second) // let late duplicates (if any) arrive
	stored := e.jobsStored()
	if len(stored) != len(want.Records) {
		t.Fatalf("JOBS holds %d records, want %d", len(stored), len(want.Records))
	}
	if d := aggregator.Compare(want.Records, stored); !d.Clean() {
		for _, r := range want.Records {
			if slices.Contains(d.Missing, r.JobID) || slices.Contains(d.Different, r.JobID) {
				t.Logf("rebuilt: %s", recordJSON(r))
			}
		}
		for _, r := range stored {
			if slices.Contains(d.Extra, r.JobID) || slices.Contains(d.Different, r.JobID) {
				t.Logf("in JOBS: %s", recordJSON(r))
			}
		}
		t.Fatalf("JOBS differs from the rebuild: missing %v, extra %v, different %v", d.Missing, d.Extra, d.Different)
	}
	seen := map[string]int{}
	for _, r := range stored {
		for _, task := range r.Tasks {
			seen[r.Source+"/"+task.TaskID]++
		}
	}
	if len(seen) != tasks+snsTasks {
		t.Fatalf("%d distinct tasks in JOBS, want %d", len(seen), tasks+snsTasks)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("task %s in %d jobs", id, n)
		}
	}
	for _, r := range stored {
		if r.Source == "default" && r.ClosedBy != jobs.ClosedByJobEvent {
			t.Errorf("job %s closed by %s", r.JobID, r.ClosedBy)
		}
	}
}

// TestBacklogOfOneKeyInGroups: a backlog of one key's messages is applied in
// groups (fewer state writes than messages), each message once: JOBS equals
// the rebuild.
func TestBacklogOfOneKeyInGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := 0
	for j := range 5 {
		inv := "inv-" + string(rune('a'+j))
		e.callback("default", "sdPreInvoke", "a_hot", inv, nil)
		for k := range 12 {
			e.callback("default", "sdTaskFinished", "a_hot", inv, taskBody(k%3 != 0, inv+"-"+string(rune('a'+k))))
		}
		e.callback("default", "sdJobFinished", "a_hot", inv, taskBody(true))
		n += 14
	}
	reg := prometheus.NewRegistry()
	nc, err := nats.Connect(e.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The first commit waits until the whole backlog was delivered to the
	// replica, so the key's next messages are queued behind it.
	var first sync.Once
	delivered := func() { // on a worker goroutine: no t.Fatal here
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if c, err := e.js.Consumer(t.Context(), contract.StreamIngress, aggregator.ConsumerName); err == nil && c.CachedInfo().NumPending == 0 {
				return
			}
		}
	}
	svc, err := aggregator.New(context.Background(), e.cfg, natstest.JetStream(t, nc), reg, aggregator.WithFaults(
		func(uint64) { first.Do(delivered) },
		func(m jetstream.Msg) error { return m.Ack() }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	want := e.rebuild(time.Now())
	e.waitJobs(30*time.Second, len(want.Records))
	if d := aggregator.Compare(want.Records, e.jobsStored()); !d.Clean() || d.Same != 5 {
		t.Fatalf("JOBS differs from the rebuild: %+v", d)
	}
	var applied, writes float64
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "sdevents_aggregator_group_commits_total":
				writes += m.GetCounter().GetValue()
			case "sdevents_aggregator_messages_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "outcome" && l.GetValue() == "applied" {
						applied += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if applied != float64(n) || writes == 0 || writes >= applied {
		t.Fatalf("%v messages applied in %v state writes, want %d in fewer", applied, writes, n)
	}
}

// recordJSON shows a record, with the invokeIds the event leaves out.
func recordJSON(r jobs.Record) string {
	b, _ := json.Marshal(struct {
		jobs.Record
		InvokeIDs []string `json:"invoke_ids"`
	}{r, r.InvokeIDs})
	return string(b)
}
