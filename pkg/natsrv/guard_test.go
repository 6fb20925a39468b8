package natsrv_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/natsrv"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/smallfs"
)

// TestGuardBringsTheStoreBackAfterDiskFull: on a full file system a
// stream's store fails its write and keeps refusing every later one, also
// after space is free again; the guard turns readiness red meanwhile and,
// once the store directory accepts writes, restarts the server: writes are
// stored again, nothing acknowledged before is lost, and a consumer that
// was running gets every message once its connection is back.
func TestGuardBringsTheStoreBackAfterDiskFull(t *testing.T) {
	dir := smallfs.Mount(t, 16<<20)
	o := natsrv.Options{Addr: "127.0.0.1:0", StoreDir: dir, SyncInterval: time.Minute}
	e, err := natsrv.StartEmbedded(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	type change struct {
		problem   error
		restarted bool
	}
	changes := make(chan change, 16)
	g := natsrv.NewGuard(e, natsrv.GuardOptions{
		Interval:   50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		OnChange:   func(p error, restarted bool) { changes <- change{p, restarted} },
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	nc, err := nats.Connect(e.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"}})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "reader", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 64)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if md, err := m.Metadata(); err == nil {
			got <- md.Sequence.Stream
		}
		_ = m.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)

	payload := make([]byte, 4<<10)
	publish := func() error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "ev.a", payload)
		return err
	}
	if err := publish(); err != nil {
		t.Fatal(err)
	}
	stored := 1
	guardDone := make(chan error, 1)
	go func() { guardDone <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-guardDone; err != nil {
			t.Errorf("guard: %v", err)
		}
	})

	free := smallfs.Fill(t, dir)
	if err := publish(); err == nil {
		t.Fatal("a publish on a full file system was acknowledged")
	}
	natstest.Eventually(t, 30*time.Second, "readiness red", func() bool { return g.Ready(ctx) != nil })
	if err := g.Ready(ctx); !errors.Is(err, natsrv.ErrStoreBroken) {
		t.Fatalf("Ready: %v", err)
	}
	if c := <-changes; c.problem == nil {
		t.Fatalf("first change %+v, want the problem", c)
	}

	free()
	natstest.Eventually(t, 60*time.Second, "stored again after space came back", func() bool { return publish() == nil })
	stored++
	natstest.Eventually(t, 30*time.Second, "readiness green", func() bool { return g.Ready(ctx) == nil })
	recovered := false
	for len(changes) > 0 {
		if c := <-changes; c.problem == nil && c.restarted {
			recovered = true
		}
	}
	if !recovered {
		t.Error("no change reported the recovery by restart")
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(stored) {
		t.Fatalf("EVENTS holds %d messages, want %d", info.State.Msgs, stored)
	}
	for range stored {
		select {
		case <-got:
		case <-time.After(2 * time.Minute):
			t.Fatal("the consumer did not get every stored message")
		}
	}
}
