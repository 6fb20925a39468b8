package quota_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota/ledger"
	"github.com/sdevents/sdevents/services/quota/quotatest"
)

// TestLoadFromSnapshot: an account with a long history written without
// snapshots is loaded once from its first event; the replica then appends
// a snapshot, and every later load reads the snapshot and the events after
// it — counted in events read, not time — and reaches the same state.
// Snapshots are appended every quota.snapshot_every events, and the replay
// checks each against the fold of the events before it.
func TestLoadFromSnapshot(t *testing.T) {
	t.Parallel()
	cfg := quotatest.Config()
	cfg.SnapshotEvery = 40
	d := start(t, cfg, 1)
	const token = "user-long-history"
	acct := quotatest.AcctOf(token)
	const n = 3000
	want := d.History(acct, n, time.Minute)

	first := d.View(acct)
	if got := d.Counter("sdevents_quota_account_load_events_total"); got != n {
		t.Fatalf("the first load read %d events, want all %d", got, n)
	}
	if first.Balance != want.Balance || first.Reserved != want.Reserved || first.Committed != want.Committed {
		t.Fatalf("view %+v, the history folds to balance %d reserved %d committed %d", first, want.Balance, want.Reserved, want.Committed)
	}
	snapshots := func() int {
		k := 0
		for _, e := range d.Events(acct) {
			if e.Type == ledger.TypeSnapshot {
				k++
			}
		}
		return k
	}
	natstest.Eventually(t, 30*time.Second, "a snapshot after the long load", func() bool { return snapshots() == 1 })

	t.Cleanup(func() {
		if t.Failed() {
			t.Log(d.Logs.String())
		}
	})
	// More decisions: one snapshot every 40 events.
	for i := range 100 {
		if a := d.reserve(token, fmt.Sprint("new-", i)); !a.Success() {
			t.Fatalf("reserve: %s", a.Raw)
		}
	}
	natstest.Eventually(t, 30*time.Second, "a snapshot every 40 events", func() bool { return snapshots() >= 3 })

	// A replica that never saw the account loads it from the latest
	// snapshot: it reads at most the events since.
	before := d.Counter("sdevents_quota_account_load_events_total")
	r := d.AddReplica()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := r.Svc.View(ctx, acct)
	if err != nil {
		t.Fatal(err)
	}
	read := d.Counter("sdevents_quota_account_load_events_total") - before
	if read > 2*cfg.SnapshotEvery {
		t.Fatalf("a load after the snapshots read %d events", read)
	}
	ref := d.View(acct)
	if v.Balance != ref.Balance || v.Reserved != ref.Reserved || v.Committed != ref.Committed || v.Granted != ref.Granted ||
		len(v.Reservations) != len(ref.Reservations) || len(v.Reservations) != n/2+100-(n-1)/2 {
		t.Fatalf("loaded from the snapshot: balance %d reserved %d committed %d, %d open; the first replica: %d %d %d, %d open",
			v.Balance, v.Reserved, v.Committed, len(v.Reservations), ref.Balance, ref.Reserved, ref.Committed, len(ref.Reservations))
	}
	t.Logf("%d events: the first load read %d; after %d snapshots a cold load read %d", n, n, snapshots(), read)

	// Its decisions agree: a repeat of an old reservation is known, a
	// commit of an open one goes through.
	if a := d.callback(callback.BizAPICommit, token, "new-7", nil); !a.Success() {
		t.Fatalf("commit after reloads: %s", a.Raw)
	}
	if a := d.callback(callback.BizAPIRollback, token, "old-1", nil); a.Success() {
		t.Fatalf("rollback of a reservation committed long ago: %s", a.Raw)
	}
	rep := d.Replay()
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
	cfg := quotatest.Config()
	cfg.SnapshotEvery = 10
	d := start(t, cfg, 1)
	const token = "user-many-open"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 1000, "")
	for i := range 70 {
		if a := d.reserve(token, fmt.Sprint("open-", i)); !a.Success() {
			t.Fatalf("reserve: %s", a.Raw)
		}
	}
	// The events between two snapshots, and the open reservations each held.
	var gaps, open []int
	natstest.Eventually(t, 30*time.Second, "two snapshots", func() bool {
		gaps, open = gaps[:0], open[:0]
		n := 0
		for _, e := range d.Events(acct) {
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
		if n < max(cfg.SnapshotEvery, open[i]) {
			t.Errorf("a snapshot %d events after one of %d open reservations", n, open[i])
		}
	}
	d.Replay()
}
