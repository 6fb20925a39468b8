package quota_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/services/quota/ledger"
	"github.com/sdevents/sdevents/services/quota/quotatest"
)

// deadRecords returns every record of DEAD with the subject it is on.
func deadRecords(d *quotatest.Deployment) ([]deadletter.Record, []string) {
	d.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := d.JS.Stream(ctx, contract.StreamDead)
	if err != nil {
		d.T.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		d.T.Fatal(err)
	}
	var recs []deadletter.Record
	var on []string
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			d.T.Fatal(err)
		}
		var r deadletter.Record
		if err := json.Unmarshal(m.Data, &r); err != nil {
			d.T.Fatal(err)
		}
		recs, on = append(recs, r), append(on, m.Subject)
	}
	return recs, on
}

// buried is the number of expiry timers the replicas counted as buried.
func buried(d *quotatest.Deployment) int {
	return d.CounterWith(deadletter.MetricName, map[string]string{"consumer": "quota-expiry"})
}

// expiryIdle reports whether the quota-expiry consumer holds nothing
// pending or unacknowledged.
func expiryIdle(d *quotatest.Deployment) bool {
	c, err := d.JS.Consumer(context.Background(), contract.StreamQuotaTimers, "quota-expiry")
	if err != nil {
		return false
	}
	ci := c.CachedInfo()
	return ci.NumPending == 0 && ci.NumAckPending == 0
}

// lastEvent is the type and invoke id of the last QUOTA event of acct.
func lastEvent(d *quotatest.Deployment, acct string) (ledger.EventType, string) {
	evs := d.Events(acct)
	if len(evs) == 0 {
		return "", ""
	}
	return evs[len(evs)-1].Type, evs[len(evs)-1].InvokeID
}

// reserveOne reserves one credit of acct for invokeID over NATS.
func reserveOne(t *testing.T, d *quotatest.Deployment, acct, invokeID string) {
	t.Helper()
	if a := d.Decide(quotarpc.DecideRequest{BizType: callback.BizAPIPreInvoke, Account: acct, InvokeID: invokeID, Body: []byte(`{"batch_size":1,"n_iter":1}`)}); !a.Success {
		t.Fatalf("reserve %s: %+v", invokeID, a)
	}
}

// TestMalformedExpiryTimerIsBuried: a fired timer the quota cannot read is
// buried on its first delivery — one record on sd.dead.quota-expiry with a
// reason that holds none of its data, counted once — and the consumer moves
// on: the next reservation's timer expires it.
func TestMalformedExpiryTimerIsBuried(t *testing.T) {
	t.Parallel()
	cfg := quotatest.Config()
	cfg.ReservationTTL = time.Second
	d := quotatest.Start(t, cfg, 2, nil)
	const token = "user-poison-timer"
	acct := quotatest.AcctOf(token)
	ack, err := d.JS.PublishMsg(t.Context(), &nats.Msg{Subject: "sdevents.quota.due." + acct, Data: []byte(`{"account":"secret`), Header: nats.Header{}})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 15*time.Second, "the timer buried", func() bool {
		return buried(d) == 1 && expiryIdle(d)
	})
	recs, on := deadRecords(d)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	if r := recs[0]; on[0] != "sd.dead.quota-expiry" || r.Consumer != "quota-expiry" || r.Stream != contract.StreamQuotaTimers ||
		r.Sequence != ack.Sequence || r.Subject != "sdevents.quota.due."+acct || r.Deliveries != 1 ||
		r.Reason != "cannot be processed: malformed expiry timer" {
		t.Fatalf("record on %s: %+v", on[0], r)
	}

	d.Grant(token, 2, "")
	reserveOne(t, d, acct, "next")
	natstest.Eventually(t, 15*time.Second, "the next reservation expired by its timer", func() bool {
		typ, inv := lastEvent(d, acct)
		return typ == ledger.TypeExpired && inv == "next" && expiryIdle(d) && d.Decisions("expire") >= 1
	})
	if recs, _ := deadRecords(d); len(recs) != 1 || buried(d) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	d.Replay()
}

// TestExpiryTimerBuriedReservationSwept: QUOTA refuses every append (its
// size cap reached) while a reservation's timer fires, so the timer's
// expiry fails on each of its max_deliver deliveries and it is buried on
// the last one — one record, counted — and the timer is gone. Once QUOTA
// takes appends again, the sweep of overdue reservations expires the
// reservation anyway, once: giving the timer up holds no credits for good.
// The consumer moves on: the next reservation expires normally.
func TestExpiryTimerBuriedReservationSwept(t *testing.T) {
	t.Parallel()
	cfg := quotatest.Config()
	cfg.ReservationTTL = time.Second
	d := quotatest.Start(t, cfg, 1, nil)
	ctx := t.Context()
	// Three deliveries, not sixty; a replica reads max_deliver when it
	// starts, so the test's replica is one started after the change.
	c, err := d.JS.Consumer(ctx, contract.StreamQuotaTimers, "quota-expiry")
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	cc.MaxDeliver = 3
	if _, err := d.JS.UpdateConsumer(ctx, contract.StreamQuotaTimers, cc); err != nil {
		t.Fatal(err)
	}
	d.Replica(0).Stop(t)
	d.ServeHTTP(d.AddReplica())

	const token = "user-swept"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 3, "")
	reserveOne(t, d, acct, "stuck")

	// QUOTA full: nothing can be appended, the expiry neither.
	s, err := d.JS.Stream(ctx, contract.StreamQuota)
	if err != nil {
		t.Fatal(err)
	}
	open := s.CachedInfo().Config
	full := open
	full.MaxMsgs = int64(s.CachedInfo().State.Msgs)
	if _, err := d.JS.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the timer buried after its last delivery", func() bool {
		recs, _ := deadRecords(d)
		return len(recs) == 1 && expiryIdle(d)
	})
	recs, on := deadRecords(d)
	if r := recs[0]; on[0] != "sd.dead.quota-expiry" || r.Stream != contract.StreamQuotaTimers || r.Subject != "sdevents.quota.due."+acct ||
		r.Deliveries != 3 || !strings.HasPrefix(r.Reason, "expiry failed 3 times: ") {
		t.Fatalf("record %+v", r)
	}
	if n := buried(d); n != 1 {
		t.Fatalf("counted %v", n)
	}
	if typ, _ := lastEvent(d, acct); typ != ledger.TypeReserved {
		t.Fatalf("last event %s while QUOTA is full", typ)
	}

	// QUOTA takes appends again: no timer is left, the sweep expires it.
	if _, err := d.JS.UpdateStream(ctx, open); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, "the reservation expired by the sweep", func() bool {
		typ, inv := lastEvent(d, acct)
		return typ == ledger.TypeExpired && inv == "stuck"
	})
	if n := d.CounterWith("sdevents_quota_decisions_total", map[string]string{"kind": "sweep", "outcome": "accepted"}); n != 1 {
		t.Fatalf("%v reservations expired by the sweep, want 1", n)
	}
	if v := d.View(acct); v.Balance != 3 || v.Reserved != 0 {
		t.Fatalf("after the sweep: %+v", v)
	}

	// The consumer moved on: the next reservation's timer is handled.
	reserveOne(t, d, acct, "next")
	natstest.Eventually(t, 15*time.Second, "the next reservation expired", func() bool {
		typ, inv := lastEvent(d, acct)
		return typ == ledger.TypeExpired && inv == "next" && expiryIdle(d)
	})
	if recs, _ := deadRecords(d); len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	d.Replay()
}
