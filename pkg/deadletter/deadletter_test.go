package deadletter_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// TestBuryRecordsOnceAndTerminates: a buried message leaves one record on
// sd.dead.<consumer> with its stream, sequence, subject, deliveries and
// reason, and is never delivered again; burying it again (another replica,
// a lost acknowledgement) adds no record.
func TestBuryRecordsOnceAndTerminates(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	natstest.ApplyStreams(t, js, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"work.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "WORK", jetstream.ConsumerConfig{
		Durable: "worker", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 3, AckWait: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "work.a", []byte("poison"))
	if err != nil {
		t.Fatal(err)
	}
	budget := deadletter.BudgetOf(cons.CachedInfo().Config)
	var m jetstream.Msg
	for n := uint64(1); ; n++ {
		m, err = cons.Next(jetstream.FetchMaxWait(5 * time.Second))
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
	rec, err := deadletter.Bury(ctx, js, m, "cannot handle it")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deadletter.Bury(ctx, js, m, "cannot handle it"); err != nil {
		t.Fatal(err)
	}
	dead, err := js.Stream(ctx, contract.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dead.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("DEAD holds %v records (%v)", info.State.Msgs, err)
	}
	raw, err := dead.GetMsg(ctx, info.State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	var got deadletter.Record
	if err := json.Unmarshal(raw.Data, &got); err != nil {
		t.Fatal(err)
	}
	want := deadletter.Record{Consumer: "worker", Stream: "WORK", Sequence: ack.Sequence, Subject: "work.a",
		Deliveries: 3, Reason: "cannot handle it"}
	if raw.Subject != "sd.dead.worker" || got.Consumer != want.Consumer || got.Stream != want.Stream ||
		got.Sequence != want.Sequence || got.Subject != want.Subject || got.Deliveries != want.Deliveries ||
		got.Reason != want.Reason || got.StoredAt.IsZero() || got.At.IsZero() || got.At != rec.At {
		t.Fatalf("record on %s: %+v", raw.Subject, got)
	}
	if id := raw.Header.Get("Nats-Msg-Id"); id != "dead-worker-WORK-1" || raw.Header.Get("ce-type") != "sd.dead" {
		t.Fatalf("headers %v", raw.Header)
	}
	natstest.Eventually(t, 10*time.Second, "the consumer moved past the message", func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.AckFloor.Stream == ack.Sequence && ci.NumAckPending == 0 && ci.NumPending == 0
	})
}

func TestPublishRefusesABadConsumerName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "a.b", "a*", "a>", "a b"} {
		err := deadletter.Publish(context.Background(), nil, deadletter.Record{Consumer: name})
		if !errors.Is(err, deadletter.ErrBadConsumer) {
			t.Errorf("%q: %v", name, err)
		}
	}
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
