package quota_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// history appends n events to acct's ledger as a replica without
// snapshots wrote them (a grant, then reservations and commits), spread
// evenly over the span before now, straight to the stream, and returns the
// account they fold to.
func (d *deployment) history(acct string, n int, span time.Duration) *ledger.Account {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := ledger.NewAccount(acct)
	start := time.Now().Add(-span).UTC()
	var futures []jetstream.PubAckFuture
	var last uint64
	step := span / time.Duration(n)
	for i := range n {
		at := start.Add(step * time.Duration(i))
		var dec ledger.Decision
		switch {
		case i == 0:
			dec = a.Grant("", ledger.MaxCredits/2, at)
		case i%2 == 1:
			dec = a.Reserve(fmt.Sprintf("old-%d", i), "r", 1, time.Hour, at)
		default:
			dec = a.Commit(fmt.Sprintf("old-%d", i-1), at)
		}
		data, err := json.Marshal(dec.Events[0])
		if err != nil {
			d.t.Fatal(err)
		}
		f, err := d.js.PublishAsync("sd.quota."+acct, data)
		if err != nil {
			d.t.Fatal(err)
		}
		futures = append(futures, f)
		last++
		if err := a.Apply(dec.Events[0], last); err != nil { // sequences as if alone in the stream
			d.t.Fatal(err)
		}
	}
	select {
	case <-d.js.PublishAsyncComplete():
	case <-ctx.Done():
		d.t.Fatal("publishing the history timed out")
	}
	for _, f := range futures {
		select {
		case err := <-f.Err():
			d.t.Fatal(err)
		default:
		}
	}
	return a
}

// counter is the sum of a counter family over the replicas' registries.
func (d *deployment) counter(name string) int {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0.0
	for _, r := range d.replicas {
		mfs, err := r.reg.Gather()
		if err != nil {
			d.t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, m := range mf.GetMetric() {
					n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return int(n)
}

// TestLoadFromSnapshot: an account with a long history written without
// snapshots is loaded once from its first event; the replica then appends
// a snapshot, and every later load reads the snapshot and the events after
// it — counted in events read, not time — and reaches the same state.
// Snapshots are appended every quota.snapshot_every events, and the replay
// checks each against the fold of the events before it.
func TestLoadFromSnapshot(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Quota.SnapshotEvery = 40
	d := start(t, cfg, 1)
	const token = "user-long-history"
	acct := acctOf(token)
	const n = 3000
	want := d.history(acct, n, time.Minute)

	first := d.view(acct)
	if got := d.counter("sdevents_quota_account_load_events_total"); got != n {
		t.Fatalf("the first load read %d events, want all %d", got, n)
	}
	if first.Balance != want.Balance || first.Reserved != want.Reserved || first.Committed != want.Committed {
		t.Fatalf("view %+v, the history folds to balance %d reserved %d committed %d", first, want.Balance, want.Reserved, want.Committed)
	}
	snapshots := func() int {
		k := 0
		for _, e := range d.events(acct) {
			if e.Type == ledger.TypeSnapshot {
				k++
			}
		}
		return k
	}
	natstest.Eventually(t, 30*time.Second, "a snapshot after the long load", func() bool { return snapshots() == 1 })

	t.Cleanup(func() {
		if t.Failed() {
			t.Log(d.logs.String())
		}
	})
	// More decisions: one snapshot every 40 events.
	for i := range 100 {
		if a := d.reserve(token, fmt.Sprint("new-", i)); !a.success() {
			t.Fatalf("reserve: %s", a.Raw)
		}
	}
	natstest.Eventually(t, 30*time.Second, "a snapshot every 40 events", func() bool { return snapshots() >= 3 })

	// A replica that never saw the account loads it from the latest
	// snapshot: it reads at most the events since.
	before := d.counter("sdevents_quota_account_load_events_total")
	r := d.addReplica()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := r.svc.View(ctx, acct)
	if err != nil {
		t.Fatal(err)
	}
	read := d.counter("sdevents_quota_account_load_events_total") - before
	if read > 2*cfg.Quota.SnapshotEvery {
		t.Fatalf("a load after the snapshots read %d events", read)
	}
	ref := d.view(acct)
	if v.Balance != ref.Balance || v.Reserved != ref.Reserved || v.Committed != ref.Committed || v.Granted != ref.Granted ||
		len(v.Reservations) != len(ref.Reservations) || len(v.Reservations) != n/2+100-(n-1)/2 {
		t.Fatalf("loaded from the snapshot: balance %d reserved %d committed %d, %d open; the first replica: %d %d %d, %d open",
			v.Balance, v.Reserved, v.Committed, len(v.Reservations), ref.Balance, ref.Reserved, ref.Committed, len(ref.Reservations))
	}
	t.Logf("%d events: the first load read %d; after %d snapshots a cold load read %d", n, n, snapshots(), read)

	// Its decisions agree: a repeat of an old reservation is known, a
	// commit of an open one goes through.
	if a := d.callback(callback.BizAPICommit, token, "new-7", nil); !a.success() {
		t.Fatalf("commit after reloads: %s", a.Raw)
	}
	if a := d.callback(callback.BizAPIRollback, token, "old-1", nil); a.success() {
		t.Fatalf("rollback of a reservation committed long ago: %s", a.Raw)
	}
	rep := d.replay()
	if rep.Snapshots != snapshots() {
		t.Fatalf("the replay checked %d snapshots of %d", rep.Snapshots, snapshots())
	}
}

// TestSnapshotsSpacedByOpenReservations: an account whose reservations stay
// open gets a snapshot every quota.snapshot_every events only while its
// snapshots hold fewer open reservations than that; after a snapshot of k
// open reservations the next comes at least k events later, so that copying
// them (while the account's decisions wait) costs each event at most one.
func TestSnapshotsSpacedByOpenReservations(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Quota.SnapshotEvery = 10
	d := start(t, cfg, 1)
	const token = "user-many-open"
	acct := acctOf(token)
	d.grant(token, 1000, "")
	for i := range 70 {
		if a := d.reserve(token, fmt.Sprint("open-", i)); !a.success() {
			t.Fatalf("reserve: %s", a.Raw)
		}
	}
	// The events between two snapshots, and the open reservations each held.
	var gaps, open []int
	natstest.Eventually(t, 30*time.Second, "two snapshots", func() bool {
		gaps, open = gaps[:0], open[:0]
		n := 0
		for _, e := range d.events(acct) {
			if e.Type != ledger.TypeSnapshot {
				n++
				continue
			}
			if len(open) > 0 {
				gaps = append(gaps, n)
			}
			open, n = append(open, len(e.State.Open)), 0
		}
		return len(open) >= 2
	})
	for i, n := range gaps {
		if n < max(cfg.Quota.SnapshotEvery, open[i]) {
			t.Errorf("a snapshot %d events after one of %d open reservations", n, open[i])
		}
	}
	d.replay()
}
