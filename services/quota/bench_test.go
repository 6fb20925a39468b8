package quota_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/ledger"
	"github.com/sdevents/sdevents/services/quota/quotatest"
)

// BenchmarkColdLoad measures a replica loading an account of 30,000 events
// over 30 days that it has never seen (the first decision on it after a
// start or an eviction): from the first event, as an account without
// snapshots loads, and from its latest snapshot (quota.snapshot_every =
// 1000), which holds the outcomes of the last quota.decided_retention. It
// reports the events read per load besides the time; the ratio of the two
// times is what snapshots buy, the events read what bounds it. A third
// account has its 30,000 events within the last 10 minutes: its snapshot
// holds all 15,000 outcomes (none is old enough to forget), the largest a
// snapshot of that history gets.
func BenchmarkColdLoad(b *testing.B) {
	const n = 30_000
	cfg := quotatest.Config()
	d := quotatest.Start(b, cfg, 1, nil)
	bare, snap, recent := quotatest.AcctOf("bench-bare"), quotatest.AcctOf("bench-snapshot"), quotatest.AcctOf("bench-recent")
	d.History(bare, n, 30*24*time.Hour)
	d.History(snap, n, 30*24*time.Hour)
	d.History(recent, n, 10*time.Minute)
	for _, acct := range []string{snap, recent} {
		d.View(acct) // loads it whole, then appends a snapshot
		natstest.Eventually(b, time.Minute, "the snapshot", func() bool {
			evs := d.Events(acct)
			return evs[len(evs)-1].Type == ledger.TypeSnapshot
		})
	}
	for _, tc := range []struct{ name, acct string }{
		{"from-the-first-event", bare}, {"from-the-snapshot", snap}, {"from-a-snapshot-of-recent-outcomes", recent},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var read float64
			for b.Loop() {
				b.StopTimer()
				nc, js := natstest.Connect(b, d.Node.URL())
				reg := prometheus.NewRegistry()
				cfg := d.Cfg
				cfg.SnapshotEvery = 1 << 30 // this replica writes none
				svc, err := quota.New(context.Background(), cfg, js, reg)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				b.StartTimer()
				if _, err := svc.View(ctx, tc.acct); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cancel()
				read += gathered(b, reg, "sdevents_quota_account_load_events_total")
				nc.Close()
				b.StartTimer()
			}
			b.ReportMetric(read/float64(b.N), "events-read/op")
		})
	}
}

// gathered is the value of the counter name in reg.
func gathered(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
