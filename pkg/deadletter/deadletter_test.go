package deadletter_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// work is a stream WORK with a durable consumer "worker" of max_deliver
// maxDeliver, on a node that has the project's streams (DEAD among them).
type work struct {
	t    *testing.T
	node *natstest.Node
	js   jetstream.JetStream
	cons jetstream.Consumer
}

func newWork(t *testing.T, maxDeliver int, ackWait time.Duration) *work {
	t.Helper()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"work.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "WORK", jetstream.ConsumerConfig{
		Durable: "worker", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: maxDeliver, AckWait: ackWait,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &work{t: t, node: node, js: js, cons: cons}
}

// records returns every record of DEAD with its subject.
func (w *work) records() ([]deadletter.Record, []string) {
	w.t.Helper()
	ctx := w.t.Context()
	dead, err := w.js.Stream(ctx, contract.StreamDead)
	if err != nil {
		w.t.Fatal(err)
	}
	info, err := dead.Info(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	var recs []deadletter.Record
	var subjects []string
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		raw, err := dead.GetMsg(ctx, seq)
		if err != nil {
			w.t.Fatal(err)
		}
		var r deadletter.Record
		if err := json.Unmarshal(raw.Data, &r); err != nil {
			w.t.Fatal(err)
		}
		if raw.Header.Get("Nats-Msg-Id") != r.ID() || raw.Header.Get("ce-type") != "sd.dead" {
			w.t.Fatalf("headers %v", raw.Header)
		}
		recs = append(recs, r)
		subjects = append(subjects, raw.Subject)
	}
	return recs, subjects
}

// movedOn waits until the consumer has delivered seq and holds nothing
// pending or unacknowledged.
func (w *work) movedOn(seq uint64) {
	w.t.Helper()
	natstest.Eventually(w.t, 10*time.Second, "the consumer moved past the message", func() bool {
		ci, err := w.cons.Info(w.t.Context())
		return err == nil && ci.Delivered.Stream >= seq && ci.NumAckPending == 0 && ci.NumPending == 0
	})
}

// TestBuryRecordsOnceAndTerminates: a buried message leaves one record on
// sd.dead.<consumer> with its stream, sequence, subject, deliveries and
// reason (cut to 1 KiB), counted once, and is never delivered again;
// burying it again (another replica, a lost acknowledgement) adds no record
// and counts nothing.
func TestBuryRecordsOnceAndTerminates(t *testing.T) {
	t.Parallel()
	w := newWork(t, 3, time.Second)
	ctx := t.Context()
	ack, err := w.js.Publish(ctx, "work.a", []byte("poison"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	rec, err := deadletter.NewRecorder(w.js, reg, "worker")
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, reg, "worker"); n != 0 {
		t.Fatalf("counter starts at %v", n)
	}
	budget := deadletter.BudgetOf(w.cons.CachedInfo().Config)
	var m jetstream.Msg
	for n := uint64(1); ; n++ {
		m, err = w.cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if budget.Last(n) {
			break
		}
		if err := m.Nak(); err != nil {
			t.Fatal(err)
		}
	}
	reason := "cannot handle it: " + strings.Repeat("é", 600)
	buried, err := rec.Bury(ctx, m, reason)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Bury(ctx, m, reason); err != nil {
		t.Fatal(err)
	}
	recs, subjects := w.records()
	if len(recs) != 1 {
		t.Fatalf("DEAD holds %d records", len(recs))
	}
	got := recs[0]
	if subjects[0] != "sd.dead.worker" || got.Consumer != "worker" || got.Stream != "WORK" || got.Sequence != ack.Sequence ||
		got.Subject != "work.a" || got.Deliveries != 3 || got.StoredAt.IsZero() || got.At.IsZero() || got.At != buried.At {
		t.Fatalf("record on %s: %+v", subjects[0], got)
	}
	if len(got.Reason) > 1024 || len(got.Reason) < 1000 || !strings.HasPrefix(reason, got.Reason) || !json.Valid([]byte(`"`+got.Reason+`"`)) {
		t.Fatalf("reason of %d bytes: %q", len(got.Reason), got.Reason)
	}
	if got.ID() != "dead-worker-WORK-1" {
		t.Fatalf("id %s", got.ID())
	}
	if n := count(t, reg, "worker"); n != 1 {
		t.Fatalf("counted %v", n)
	}
	w.movedOn(ack.Sequence)
}

// TestWatchRecordsAnUnansweredLastDelivery: a last delivery that nobody
// settles (the replica holding it died) makes the server give up on the
// message; its advisory reaches one of two watching replicas, which records
// the message once, with its subject and the time it was stored, and counts
// it once. A message buried before its advisory is not recorded twice.
func TestWatchRecordsAnUnansweredLastDelivery(t *testing.T) {
	t.Parallel()
	w := newWork(t, 2, time.Second)
	ctx := t.Context()
	var (
		mu       sync.Mutex
		reported []deadletter.Record
	)
	var regs []*prometheus.Registry
	for range 2 {
		nc, js := natstest.Connect(t, w.node.URL())
		reg := prometheus.NewRegistry()
		rec, err := deadletter.NewRecorder(js, reg, "worker")
		if err != nil {
			t.Fatal(err)
		}
		stop, err := rec.Watch(nc, []deadletter.Durable{{Stream: "WORK", Name: "worker"}}, func(r deadletter.Record, err error) {
			if err != nil {
				t.Errorf("watch: %v", err)
				return
			}
			mu.Lock()
			reported = append(reported, r)
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		regs = append(regs, reg)
	}
	ack, err := w.js.Publish(ctx, "work.b", []byte("held"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // both deliveries taken and never answered
		if _, err := w.cons.Next(jetstream.FetchMaxWait(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	// The other replicas keep pulling: the server looks for a message to
	// deliver again, and gives this one up.
	if m, err := w.cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err == nil {
		t.Fatalf("delivered a third time: %v", m.Subject())
	}
	natstest.Eventually(t, 30*time.Second, "the message recorded", func() bool {
		recs, _ := w.records()
		return len(recs) == 1
	})
	w.movedOn(ack.Sequence)
	recs, subjects := w.records()
	got := recs[0]
	if subjects[0] != "sd.dead.worker" || got.Stream != "WORK" || got.Sequence != ack.Sequence || got.Subject != "work.b" ||
		got.Deliveries != 2 || got.Reason != deadletter.ReasonUnanswered || got.StoredAt.IsZero() || got.At.IsZero() {
		t.Fatalf("record %+v", got)
	}
	total := 0.0
	for _, reg := range regs {
		total += count(t, reg, "worker")
	}
	mu.Lock()
	n := len(reported)
	mu.Unlock()
	if total != 1 || n != 1 {
		t.Fatalf("counted %v, reported %d times", total, n)
	}
}

// TestRecordersShareTheCounter: the services of one process register the
// counter once and count in it together; a registry holding another metric
// of that name is an error.
func TestRecordersShareTheCounter(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := deadletter.NewRecorder(nil, reg, "archiver"); err != nil {
		t.Fatal(err)
	}
	if _, err := deadletter.NewRecorder(nil, reg, "aggregator", "aggregator-due"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"archiver", "aggregator", "aggregator-due"} {
		if n := count(t, reg, c); n != 0 {
			t.Errorf("%s starts at %v", c, n)
		}
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 3 {
		t.Fatalf("gathered %v (%v), want one counter with one series per consumer", mfs, err)
	}
	other := prometheus.NewRegistry()
	other.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: deadletter.MetricName, Help: "not ours"}))
	if _, err := deadletter.NewRecorder(nil, other); err == nil {
		t.Fatal("registered over another metric")
	}
}

func TestPublishRefusesABadConsumerName(t *testing.T) {
	t.Parallel()
	rec, err := deadletter.NewRecorder(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "a.b", "a*", "a>", "a b"} {
		_, err := rec.Publish(context.Background(), deadletter.Record{Consumer: name})
		if !errors.Is(err, deadletter.ErrBadConsumer) {
			t.Errorf("%q: %v", name, err)
		}
	}
}

// count returns the value of the counter of consumer in reg.
func count(t *testing.T, reg *prometheus.Registry, consumer string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != deadletter.MetricName {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer" && l.GetValue() == consumer {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{consumer=%q}", deadletter.MetricName, consumer)
	return 0
}

func TestBudget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		max     int
		last    []uint64 // deliveries that are the last
		notLast []uint64
		third   uint64
		limited bool
	}{
		{max: -1, notLast: []uint64{1, 1000}, third: 0},
		{max: 0, notLast: []uint64{1}, third: 0},
		{max: 1, last: []uint64{1, 2}, third: 1, limited: true},
		{max: 4, last: []uint64{4}, notLast: []uint64{3}, third: 2, limited: true},
		{max: 200, last: []uint64{200}, notLast: []uint64{199}, third: 67, limited: true},
	}
	for _, tt := range tests {
		b := deadletter.Budget{MaxDeliver: tt.max}
		if b.Limited() != tt.limited {
			t.Errorf("%d: limited %v", tt.max, b.Limited())
		}
		for _, n := range tt.last {
			if !b.Last(n) {
				t.Errorf("%d: delivery %d is the last", tt.max, n)
			}
		}
		for _, n := range tt.notLast {
			if b.Last(n) {
				t.Errorf("%d: delivery %d is not the last", tt.max, n)
			}
		}
		if got := b.Share(1, 3); got != tt.third {
			t.Errorf("%d: a third is %d, want %d", tt.max, got, tt.third)
		}
	}
}
