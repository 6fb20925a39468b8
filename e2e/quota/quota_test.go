package quota_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/ledger"
	"github.com/sdevents/sdevents/services/quota/quotatest"
)

// burst sends n concurrent reservations of one credit each for token, with
// invokeIds prefix-0 … prefix-(n-1), and returns each answer by invokeId.
// after, when set, runs once `after` answers have arrived.
func (d *deployment) burst(token, prefix string, n int, afterN int, after func()) map[string]quotatest.Answer {
	var mu sync.Mutex
	out := make(map[string]quotatest.Answer, n)
	var once sync.Once
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			inv := fmt.Sprintf("%s-%d", prefix, i)
			a := d.reserve(token, inv)
			mu.Lock()
			out[inv] = a
			done := len(out)
			mu.Unlock()
			if after != nil && done >= afterN {
				once.Do(after)
			}
		})
	}
	wg.Wait()
	return out
}

// outcome sorts one answer to a reservation: held, refused for credits, or
// lost ("busy", "could not record", or a 503 the platform retries).
type outcome int

const (
	held outcome = iota
	noCredits
	lost
)

// classify sorts a; any other answer fails the test.
func classify(t *testing.T, inv string, a quotatest.Answer) outcome {
	t.Helper()
	switch {
	case a.Code == http.StatusServiceUnavailable:
		return lost
	case a.Code != http.StatusOK:
		t.Fatalf("%s: %d %s", inv, a.Code, a.Raw)
	case a.Success():
		return held
	case strings.Contains(a.ErrMessage(), "busy"), strings.Contains(a.ErrMessage(), "could not record"):
		return lost
	case !strings.Contains(a.ErrMessage(), "Not enough credits"):
		t.Fatalf("%s refused with %q", inv, a.ErrMessage())
	}
	return noCredits
}

// holdsExactly waits until the account holds exactly the reservations
// answered success (a reservation whose answer was lost is abandoned, and
// released, in the background) and returns the account's view.
func (d *deployment) holdsExactly(acct string, successes map[string]bool) quota.AccountView {
	d.T.Helper()
	var v quota.AccountView
	natstest.Eventually(d.T, 2*time.Minute, "the account to hold exactly the reservations answered success", func() bool {
		v = d.View(acct)
		return v.Reserved == int64(len(successes)) && len(v.Reservations) == len(successes)
	})
	for _, r := range v.Reservations {
		if !successes[r.InvokeID] {
			d.T.Fatalf("%s is held but was not answered success", r.InvokeID)
		}
	}
	return v
}

// drain reserves one credit at a time until the account refuses for want of
// credits, and adds each success to successes.
func (d *deployment) drain(token, prefix string, successes map[string]bool) {
	d.T.Helper()
	t := d.T.(*testing.T)
	for i := 0; ; i++ {
		inv := fmt.Sprintf("%s-%d", prefix, i)
		switch classify(t, inv, d.reserve(token, inv)) {
		case held:
			successes[inv] = true
		case noCredits:
			return
		}
		if i > 1000 {
			t.Fatalf("no refusal after %d more reservations", i)
		}
	}
}

// TestTwoReplicasNeverOverdraw races 200 reservations of one credit at two
// replicas for 50 credits. Whatever the load does to the answers (some may
// be lost and abandoned), the account never holds more than it has, holds
// exactly the reservations answered success, and, reserving on until
// refused, ends with exactly 50 held.
func TestTwoReplicasNeverOverdraw(t *testing.T) {
	t.Parallel()
	d := start(t, quotatest.Config(), 2)
	const token = "user-race"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 50, "initial")

	successes := map[string]bool{}
	var lostAnswers int
	for inv, a := range d.burst(token, "inv", 200, 0, nil) {
		switch classify(t, inv, a) {
		case held:
			successes[inv] = true
		case lost:
			lostAnswers++
		}
	}
	if len(successes) > 50 {
		t.Fatalf("%d reservations succeeded with 50 credits", len(successes))
	}
	if lostAnswers == 0 && len(successes) != 50 {
		t.Fatalf("%d reservations succeeded, want exactly 50", len(successes))
	}
	d.holdsExactly(acct, successes)
	d.drain(token, "more", successes)
	v := d.holdsExactly(acct, successes)
	if v.Balance != 0 || v.Reserved != 50 || len(successes) != 50 {
		t.Fatalf("admin view: balance %d reserved %d, %d answered success", v.Balance, v.Reserved, len(successes))
	}

	reserved := map[string]bool{}
	for _, e := range d.Events(acct) {
		if e.Type != ledger.TypeReserved {
			continue
		}
		if reserved[e.InvokeID] {
			t.Fatalf("%s reserved twice", e.InvokeID)
		}
		reserved[e.InvokeID] = true
	}
	rep := d.Replay()
	b := rep.Balances[acct]
	if b.Balance != 0 || b.Reserved != 50 || len(b.Open) != 50 {
		t.Fatalf("fold: balance %d reserved %d open %d", b.Balance, b.Reserved, len(b.Open))
	}
	for inv := range successes {
		if _, open := b.Open[inv]; !open {
			t.Fatalf("%s answered success but is not held", inv)
		}
	}
	t.Logf("%d answers lost under load, %d reservations stored, 50 held", lostAnswers, len(reserved))
}

// TestReplicaKilledMidLoad closes one replica's NATS connection in the middle
// of a burst. A replica killed between its append and its reply leaves a
// stored reservation the platform was told was refused ("busy"): its
// abandonment, or its expiry, gives the credits back. Every reservation
// answered success stays held, and the survivor keeps serving.
func TestReplicaKilledMidLoad(t *testing.T) {
	t.Parallel()
	cfg := quotatest.Config()
	cfg.DecideDeadline = time.Second
	d := start(t, cfg, 2)
	const token = "user-kill"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 50, "initial")

	victim := d.Replica(1)
	successes := map[string]bool{}
	var lostAnswers int
	for inv, a := range d.burst(token, "inv", 200, 40, func() { victim.NC.Close() }) {
		switch classify(t, inv, a) {
		case held:
			successes[inv] = true
		case lost:
			lostAnswers++
		}
	}
	reserved := map[string]bool{}
	for _, e := range d.Events(acct) {
		if e.Type != ledger.TypeReserved {
			continue
		}
		if reserved[e.InvokeID] {
			t.Fatalf("%s reserved twice", e.InvokeID)
		}
		reserved[e.InvokeID] = true
	}
	for inv := range successes {
		if !reserved[inv] {
			t.Fatalf("%s answered success but no reservation is stored", inv)
		}
	}
	d.holdsExactly(acct, successes)
	rep := d.Replay()
	b := rep.Balances[acct]
	if b.Balance < 0 || b.Balance+b.Reserved != 50 || b.Committed != 0 {
		t.Fatalf("fold: balance %d reserved %d committed %d", b.Balance, b.Reserved, b.Committed)
	}
	// The survivor serves what is left.
	d.drain(token, "after", successes)
	if v := d.holdsExactly(acct, successes); v.Balance != 0 || v.Reserved != 50 {
		t.Fatalf("after the kill: balance %d reserved %d", v.Balance, v.Reserved)
	}
	t.Logf("killed a replica after 40 answers: %d succeeded, %d lost, %d stored", len(successes), lostAnswers, len(reserved))
}

func TestRestartKeepsBalancesAndExpiresWhileDown(t *testing.T) {
	t.Parallel()
	cfg := quotatest.Config()
	cfg.ReservationTTL = 2 * time.Second
	d := start(t, cfg, 1)
	const alice, bob = "user-alice", "user-bob"
	d.Grant(alice, 10, "a")
	d.Grant(bob, 7, "b")
	for _, inv := range []string{"c1", "open"} {
		if a := d.reserve(alice, inv); !a.Success() {
			t.Fatalf("reserve %s: %s", inv, a.Raw)
		}
	}
	if a := d.callback(callback.BizAPICommit, alice, "c1", nil); !a.Success() {
		t.Fatalf("commit: %s", a.Raw)
	}
	before := d.View(quotatest.AcctOf(alice))
	if before.Balance != 8 || before.Reserved != 1 {
		t.Fatalf("before: %+v", before)
	}
	expires := before.Reservations[0].ExpiresAt

	// Everything stops: the service, then the server.
	d.Replica(0).Stop(t)
	d.Node.Restart()
	natstest.Eventually(t, 10*time.Second, "the reservation's expiry to pass", func() bool {
		return time.Now().After(expires.Add(500 * time.Millisecond))
	})
	_, js := natstest.Connect(t, d.Node.URL())
	d.JS = js
	r := d.AddReplica()
	d.ServeHTTP(r)

	natstest.Eventually(t, 15*time.Second, "the overdue reservation released", func() bool {
		v := d.View(quotatest.AcctOf(alice))
		return v.Balance == 9 && v.Reserved == 0
	})
	if v := d.View(quotatest.AcctOf(bob)); v.Balance != 7 {
		t.Fatalf("bob after restart: %+v", v)
	}
	evs := d.Events(quotatest.AcctOf(alice))
	if last := evs[len(evs)-1]; last.Type != ledger.TypeExpired || last.InvokeID != "open" {
		t.Fatalf("last event %+v", last)
	}
	// Committing it now is refused clearly and changes nothing.
	if a := d.callback(callback.BizAPICommit, alice, "open", nil); a.Success() || !strings.Contains(a.ErrMessage(), "expired") {
		t.Fatalf("late commit: %s", a.Raw)
	}
	if n := len(d.Events(quotatest.AcctOf(alice))); n != len(evs) {
		t.Fatalf("late commit appended %d events", n-len(evs))
	}
	d.Replay()
}

func TestExpiryWhileRunning(t *testing.T) {
	t.Parallel()
	cfg := quotatest.Config()
	cfg.ReservationTTL = time.Second
	d := start(t, cfg, 2)
	const token = "user-expiry"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 3, "")
	for _, inv := range []string{"e1", "e2", "kept"} {
		if a := d.reserve(token, inv); !a.Success() {
			t.Fatalf("reserve %s: %s", inv, a.Raw)
		}
	}
	if a := d.callback(callback.BizAPICommit, token, "kept", nil); !a.Success() {
		t.Fatalf("commit: %s", a.Raw)
	}
	natstest.Eventually(t, 10*time.Second, "both reservations expired", func() bool {
		v := d.View(acct)
		return v.Balance == 2 && v.Reserved == 0
	})
	expired := 0
	for _, e := range d.Events(acct) {
		if e.Type == ledger.TypeExpired {
			expired++
		}
	}
	if expired != 2 {
		t.Fatalf("%d expired events, want 2", expired)
	}
	if a := d.callback(callback.BizAPIRollback, token, "e1", nil); a.Success() || !strings.Contains(a.ErrMessage(), "expired") {
		t.Fatalf("rollback after expiry: %s", a.Raw)
	}
	d.Replay()
}

func TestIdempotencyOverHTTP(t *testing.T) {
	t.Parallel()
	d := start(t, quotatest.Config(), 2)
	const token = "user-idem"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 2, "g-1")
	if a := d.Grant(token, 2, "g-1"); a.Body["repeat"] != true || a.Body["balance"] != float64(2) {
		t.Fatalf("repeated grant: %s", a.Raw)
	}
	if a := d.Admin(http.MethodPost, "/v1/admin/accounts/"+acct+"/credits", quotatest.AdminToken, `{"credits": 3, "id": "g-1"}`); a.Code != http.StatusBadRequest {
		t.Fatalf("grant id reused with other credits: %d %s", a.Code, a.Raw)
	}
	count := func() int { return len(d.Events(acct)) }

	// The same reserve twice: each request is told the reservation is
	// held, the second after a confirmed event (so that the abandonment of
	// the first alone cannot release what the second was told).
	big := []byte(`{"batch_size": 2}`)
	for range 2 {
		if a := d.callback(callback.BizAPIPreInvoke, token, "r1", big); !a.Success() {
			t.Fatalf("reserve r1: %s", a.Raw)
		}
	}
	n := count()
	if evs := d.Events(acct); n != 3 || evs[1].Type != ledger.TypeReserved || evs[2].Type != ledger.TypeConfirmed {
		t.Fatalf("%d events after grant and repeated reserve (%+v), want granted, reserved, confirmed", n, evs)
	}
	// A third request is told too, and recorded too.
	if a := d.callback(callback.BizAPIPreInvoke, token, "r1", big); !a.Success() || count() != n+1 {
		t.Fatalf("reserve r1 a third time: %s, %d events", a.Raw, count())
	}
	n++
	// Denied, twice: the same refusal, one denied event.
	first := d.reserve(token, "r2")
	second := d.reserve(token, "r2")
	if first.Success() || first.ErrMessage() != second.ErrMessage() || !strings.Contains(first.ErrMessage(), "Not enough credits") {
		t.Fatalf("denials: %s / %s", first.Raw, second.Raw)
	}
	if got := count(); got != n+1 {
		t.Fatalf("%d events after two denials, want %d", got, n+1)
	}
	n++
	// Unknown reservations: clear refusals, nothing appended.
	for _, biz := range []string{callback.BizAPICommit, callback.BizAPIRollback} {
		if a := d.callback(biz, token, "nope", nil); a.Success() || !strings.Contains(a.ErrMessage(), "no reservation") {
			t.Fatalf("%s unknown: %s", biz, a.Raw)
		}
	}
	// Commit, commit again, then a rollback of the committed one.
	if a := d.callback(callback.BizAPICommit, token, "r1", nil); !a.Success() {
		t.Fatalf("commit: %s", a.Raw)
	}
	if a := d.callback(callback.BizAPICommit, token, "r1", nil); !a.Success() {
		t.Fatalf("repeated commit: %s", a.Raw)
	}
	if a := d.callback(callback.BizAPIRollback, token, "r1", nil); a.Success() || !strings.Contains(a.ErrMessage(), "already committed") {
		t.Fatalf("rollback after commit: %s", a.Raw)
	}
	if got := count(); got != n+1 {
		t.Fatalf("%d events, want %d (one commit)", got, n+1)
	}
	// Another account's reservation is unknown here.
	if a := d.callback(callback.BizAPIRollback, "user-other", "r1", nil); a.Success() {
		t.Fatalf("rollback from another account: %s", a.Raw)
	}
	// The committed credits are spent; a reserve repeated after commit is
	// still the first answer.
	if a := d.callback(callback.BizAPIPreInvoke, token, "r1", big); !a.Success() {
		t.Fatalf("reserve after commit: %s", a.Raw)
	}
	if v := d.View(acct); v.Balance != 0 || v.Reserved != 0 {
		t.Fatalf("view: %+v", v)
	}
	d.Replay()
}

func TestChecksAndPrices(t *testing.T) {
	t.Parallel()
	d := start(t, quotatest.Config(), 1)
	const token = "user-checks"
	d.Grant(token, 5, "")
	cases := []struct {
		name, biz, body string
		success         bool
		disabled        bool
		contains        string
	}{
		{"control config affordable", callback.BizImgGenControlConfig, `{"param": {"batch_size": 2, "n_iter": 2}}`, true, false, "5 credits"},
		{"control config too expensive", callback.BizImgGenControlConfig, `{"param": {"batch_size": 3, "n_iter": 2}}`, true, true, "costs 6 credits"},
		{"control config bad price", callback.BizImgGenControlConfig, `{"param": {"n_iter": -1}}`, true, true, "negative"},
		{"pre-check affordable", callback.BizSDPreInvoke, `{"batch_size": 5}`, true, false, "5 credits"},
		{"pre-check too expensive", callback.BizSDPreInvoke, `{"batch_size": 6}`, true, true, "Not enough credits"},
		{"reserve non-numeric", callback.BizAPIPreInvoke, `{"batch_size": "many"}`, false, false, "not a number"},
		{"reserve absurd", callback.BizAPIPreInvoke, `{"batch_size": 1e12}`, false, false, "images"},
		{"reserve fractional", callback.BizAPIPreInvoke, `{"n_iter": 1.5}`, false, false, "whole number"},
	}
	for _, c := range cases {
		a := d.callback(c.biz, token, "inv-"+c.name, []byte(c.body))
		text := a.ErrMessage()
		if data := a.Data(); data != nil {
			text += " " + fmt.Sprint(data["message"])
			if data["disabled"] != c.disabled {
				t.Errorf("%s: disabled = %v: %s", c.name, data["disabled"], a.Raw)
			}
		}
		if a.Code != http.StatusOK || a.Success() != c.success || !strings.Contains(text, c.contains) {
			t.Errorf("%s: %d %s", c.name, a.Code, a.Raw)
		}
	}
	if n := len(d.Events(quotatest.AcctOf(token))); n != 1 {
		t.Fatalf("checks and bad prices appended %d events", n-1)
	}
	// No token: a readable refusal.
	a := d.callback(callback.BizAPIPreInvoke, "", "inv-anon", nil)
	if a.Success() || !strings.Contains(a.ErrMessage(), "no user token") {
		t.Fatalf("without token: %s", a.Raw)
	}
}

func TestLedgerUnwritableIsRefusedInTime(t *testing.T) {
	t.Parallel()
	d := start(t, quotatest.Config(), 1)
	const token = "user-nostream"
	d.Grant(token, 5, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.JS.DeleteStream(ctx, contract.StreamQuota); err != nil {
		t.Fatal(err)
	}
	for _, biz := range []string{callback.BizAPIPreInvoke, callback.BizAPICommit, callback.BizImgGenControlConfig} {
		begin := time.Now()
		a := d.callback(biz, token, "i-1", []byte(`{}`))
		took := time.Since(begin)
		if a.Code != http.StatusOK || a.Success() || a.ErrMessage() == "" {
			t.Fatalf("%s without the ledger: %d %s", biz, a.Code, a.Raw)
		}
		if took > d.Cfg.DecideDeadline {
			t.Fatalf("%s answered after %s", biz, took)
		}
	}
}

// TestOverdueWithoutTimerExpiredWhileHeld: a reservation whose timer was
// lost (here: purged from QUOTA_TIMERS; in life, a crash between the event
// and its timer, or a timer refused until its retries gave up) is expired by
// the replica that holds its account in memory, once it is overdue by more
// than the grace left to timers, without the account being used or loaded
// again.
func TestOverdueWithoutTimerExpiredWhileHeld(t *testing.T) {
	t.Parallel()
	cfg := quotatest.Config()
	cfg.AccountIdle = time.Hour // held: never evicted and loaded again
	var skew atomic.Int64       // the replica's clock runs ahead by this much
	d := start(t, cfg, 1, quota.WithClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }))
	const token = "user-lost-timer"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 3, "")
	if a := d.reserve(token, "lost-timer"); !a.Success() {
		t.Fatalf("reserve: %s", a.Raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	timers, err := d.JS.Stream(ctx, contract.StreamQuotaTimers)
	if err != nil {
		t.Fatal(err)
	}
	if err := timers.Purge(ctx, jetstream.WithPurgeSubject("sdevents.quota.timer."+acct+".>")); err != nil {
		t.Fatal(err)
	}
	// The reservation (quota.reservation_ttl, an hour) is overdue for the
	// replica; no timer will fire for it.
	skew.Store(int64(cfg.ReservationTTL + time.Minute))
	natstest.Eventually(t, 30*time.Second, "the overdue reservation expired", func() bool {
		evs := d.Events(acct)
		last := evs[len(evs)-1]
		return last.Type == ledger.TypeExpired && last.InvokeID == "lost-timer" && last.Balance == 3 && last.Reserved == 0
	})
	d.Replay()
}

// TestTimerRefusedIsPublishedAgain: a reservation does not wait for its
// expiry timer. When QUOTA_TIMERS refuses it — the stream is gone for a
// moment, or it refuses the timer with an error no retry of the publish
// itself gets past (a max_msg_size the timer exceeds, for a moment) — the
// reservation still stands and is answered yes, and the timer is published
// again in the background until the stream takes it.
func TestTimerRefusedIsPublishedAgain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		refuse, accept func(ctx context.Context, d *deployment) error
	}{
		{
			"stream gone",
			func(ctx context.Context, d *deployment) error { return d.JS.DeleteStream(ctx, contract.StreamQuotaTimers) },
			func(_ context.Context, d *deployment) error { natstest.ApplyStreams(d.T, d.JS, 1); return nil },
		},
		{
			"timer too large",
			func(ctx context.Context, d *deployment) error { return setMaxMsgSize(ctx, d.JS, contract.StreamQuotaTimers, 16) },
			func(ctx context.Context, d *deployment) error { return setMaxMsgSize(ctx, d.JS, contract.StreamQuotaTimers, -1) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := start(t, quotatest.Config(), 1)
			const token = "user-timer-refused"
			acct := quotatest.AcctOf(token)
			d.Grant(token, 3, "")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := tc.refuse(ctx, d); err != nil {
				t.Fatal(err)
			}
			if a := d.reserve(token, "timer-later"); !a.Success() {
				t.Fatalf("reserve while timers are refused: %s", a.Raw)
			}
			if err := tc.accept(ctx, d); err != nil {
				t.Fatal(err)
			}
			timers, err := d.JS.Stream(ctx, contract.StreamQuotaTimers)
			if err != nil {
				t.Fatal(err)
			}
			natstest.Eventually(t, 30*time.Second, "the timer stored", func() bool {
				info, err := timers.Info(ctx, jetstream.WithSubjectFilter("sdevents.quota.timer."+acct+".>"))
				return err == nil && len(info.State.Subjects) == 1
			})
			if v := d.View(acct); v.Balance != 2 || v.Reserved != 1 {
				t.Fatalf("after the reservation: %+v", v)
			}
			d.Replay()
		})
	}
}

// setMaxMsgSize sets the max_msg_size of stream (-1: unlimited).
func setMaxMsgSize(ctx context.Context, js jetstream.JetStream, stream string, size int32) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = size
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// TestLostAnswersHoldNothing: while no replica answers (their requests
// are held, as by stopped processes), every apiAccessPreInvoke is answered
// "busy" once the ingress's deadline passes — or 503 when not even the
// callback could be stored in time (then the quota was never asked). The
// held decisions are made after the answers were lost; whatever the quota
// stored, the abandonments of both sides settle it: the balance comes back
// whole with nothing reserved, long before any expiry, and every invokeId
// answered "busy" ends released (with the abandonment as its reason) or
// denied for nothing.
func TestLostAnswersHoldNothing(t *testing.T) {
	t.Parallel()
	d := start(t, lostAnswerConfig(), 2)
	const token = "user-lost-answers"
	acct := quotatest.AcctOf(token)
	d.Grant(token, 200, "")
	busy := map[string]bool{}
	d.Valve.Pause()
	for i := 0; len(busy) < 5; i++ {
		if i == 64 {
			d.Valve.Resume()
			t.Fatalf("64 requests, %d answered busy: the callbacks could not be stored", len(busy))
		}
		id := fmt.Sprintf("lost-%d", i)
		a := d.callback(callback.BizAPIPreInvoke, token, id, []byte(`{"batch_size":2,"n_iter":1}`))
		switch {
		case a.Code == http.StatusServiceUnavailable:
		case isBusy(a):
			busy[id] = true
		default:
			d.Valve.Resume()
			t.Fatalf("%s with every replica held: %d %s", id, a.Code, a.Raw)
		}
	}
	d.Valve.Resume()
	settled := func() map[string]bool {
		out := map[string]bool{}
		for _, e := range d.Events(acct) {
			if e.Type == ledger.TypeReleased && e.Reason != "" || e.Type == ledger.TypeDenied && e.Credits == 0 {
				out[e.InvokeID] = true
			}
		}
		return out
	}
	natstest.Eventually(t, 30*time.Second, "every lost request settled", func() bool { return len(settled()) == len(busy) })
	for id := range settled() {
		if !busy[id] {
			t.Errorf("%s settled, but it was answered 503 and never decided", id)
		}
	}
	if v := d.View(acct); v.Balance != 200 || v.Reserved != 0 || len(v.Reservations) != 0 {
		t.Fatalf("after the abandonments: balance %d, reserved %d, %d open; want 200, 0, 0", v.Balance, v.Reserved, len(v.Reservations))
	}
	d.Replay()
}
