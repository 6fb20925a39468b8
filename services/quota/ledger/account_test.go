package ledger_test

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/quota/ledger"
)

func ev(typ ledger.EventType, invokeID string, n int64) ledger.Event {
	e := ledger.Event{Type: typ, Account: acct, InvokeID: invokeID, Credits: n, At: t0}
	if typ == ledger.TypeReserved {
		e.ExpiresAt = t0.Add(ttl)
	}
	return e
}

// evReq is ev for a request.
func evReq(typ ledger.EventType, invokeID string, n int64, req string) ledger.Event {
	e := ev(typ, invokeID, n)
	e.Request = req
	return e
}

// evAt is ev at another time.
func evAt(typ ledger.EventType, invokeID string, n int64, at time.Time) ledger.Event {
	e := ev(typ, invokeID, n)
	e.At = at
	if typ == ledger.TypeReserved {
		e.ExpiresAt = at.Add(ttl)
	}
	return e
}

// fold applies events at sequences 1, 2, … and fails on any error.
func fold(t *testing.T, events ...ledger.Event) *ledger.Account {
	t.Helper()
	a := ledger.NewAccount(acct)
	for i, e := range events {
		if err := a.Apply(e, uint64(i+1)); err != nil {
			t.Fatalf("setup event %d: %v", i+1, err)
		}
	}
	return a
}

func TestApplyInconsistent(t *testing.T) {
	t.Parallel()
	grantG := ev(ledger.TypeGranted, "", 10)
	grantG.ID = "g"
	noExpiry := ev(ledger.TypeReserved, "i2", 1)
	noExpiry.ExpiresAt = time.Time{}
	other := ev(ledger.TypeGranted, "", 5)
	other.Account = "a_other"
	cases := []struct {
		name         string
		setup        []ledger.Event
		event        ledger.Event
		wantIn       string
		wantBalance  int64
		wantReserved int64
		wantFinished ledger.EventType // outcome recorded for event.InvokeID
	}{
		{name: "commit of an unknown reservation", setup: []ledger.Event{ev(ledger.TypeGranted, "", 10)},
			event: ev(ledger.TypeCommitted, "x", 3), wantIn: "no open reservation", wantBalance: 10, wantFinished: ledger.TypeCommitted},
		{name: "release of an unknown reservation", setup: []ledger.Event{ev(ledger.TypeGranted, "", 10)},
			event: ev(ledger.TypeReleased, "x", 3), wantIn: "no open reservation", wantBalance: 10, wantFinished: ledger.TypeReleased},
		{name: "commit after release keeps the release",
			setup: []ledger.Event{ev(ledger.TypeGranted, "", 10), ev(ledger.TypeReserved, "i1", 4), ev(ledger.TypeReleased, "i1", 4)},
			event: ev(ledger.TypeCommitted, "i1", 4), wantIn: "already released", wantBalance: 10, wantFinished: ledger.TypeReleased},
		{name: "expiry after commit",
			setup: []ledger.Event{ev(ledger.TypeGranted, "", 10), ev(ledger.TypeReserved, "i1", 4), ev(ledger.TypeCommitted, "i1", 4)},
			event: ev(ledger.TypeExpired, "i1", 4), wantIn: "already committed", wantBalance: 6, wantFinished: ledger.TypeCommitted},
		{name: "commit of other credits folds the reservation's",
			setup: []ledger.Event{ev(ledger.TypeGranted, "", 10), ev(ledger.TypeReserved, "i1", 4)},
			event: ev(ledger.TypeCommitted, "i1", 5), wantIn: "held 4", wantBalance: 6, wantFinished: ledger.TypeCommitted},
		{name: "repeated reservation is not held twice",
			setup: []ledger.Event{ev(ledger.TypeGranted, "", 10), ev(ledger.TypeReserved, "i1", 4)},
			event: ev(ledger.TypeReserved, "i1", 4), wantIn: "already reserved", wantBalance: 6, wantReserved: 4},
		{name: "reservation after denial",
			setup: []ledger.Event{ev(ledger.TypeGranted, "", 1), ev(ledger.TypeDenied, "i1", 4)},
			event: ev(ledger.TypeReserved, "i1", 1), wantIn: "already reserved or denied", wantBalance: 1, wantFinished: ledger.TypeDenied},
		{name: "overdraft is folded", setup: []ledger.Event{ev(ledger.TypeGranted, "", 3)},
			event: ev(ledger.TypeReserved, "i1", 4), wantIn: "overdraft", wantBalance: -1, wantReserved: 4},
		{name: "reservation without expires_at", setup: []ledger.Event{ev(ledger.TypeGranted, "", 3)},
			event: noExpiry, wantIn: "expires_at", wantBalance: 2, wantReserved: 1},
		{name: "reservation of zero credits", setup: []ledger.Event{ev(ledger.TypeGranted, "", 3)},
			event: ev(ledger.TypeReserved, "i1", 0), wantIn: "0 credits", wantBalance: 3},
		{name: "reservation without invoke_id", setup: []ledger.Event{ev(ledger.TypeGranted, "", 3)},
			event: ev(ledger.TypeReserved, "", 1), wantIn: "without invoke_id", wantBalance: 3},
		{name: "repeated grant id is not counted twice", setup: []ledger.Event{grantG},
			event: grantG, wantIn: "grant id", wantBalance: 10},
		{name: "removal below zero is folded", setup: []ledger.Event{ev(ledger.TypeGranted, "", 3)},
			event: ev(ledger.TypeGranted, "", -5), wantIn: "below zero", wantBalance: -2},
		{name: "grant of zero", event: ev(ledger.TypeGranted, "", 0), wantIn: "zero"},
		{name: "denial without invoke_id", event: ev(ledger.TypeDenied, "", 4), wantIn: "without invoke_id"},
		{name: "denial repeated", setup: []ledger.Event{ev(ledger.TypeDenied, "i1", 4)},
			event: ev(ledger.TypeDenied, "i1", 4), wantIn: "already", wantFinished: ledger.TypeDenied},
		{name: "reservation of an invokeId finished just before",
			setup: []ledger.Event{ev(ledger.TypeGranted, "", 10), ev(ledger.TypeReserved, "i1", 4), ev(ledger.TypeCommitted, "i1", 4)},
			event: evAt(ledger.TypeReserved, "i1", 4, t0.Add(ledger.MinRetention-time.Second)), wantIn: "already reserved",
			wantBalance: 6, wantFinished: ledger.TypeCommitted},
		{name: "confirmation without an open reservation", setup: []ledger.Event{ev(ledger.TypeGranted, "", 3)},
			event: evReq(ledger.TypeConfirmed, "i1", 1, "r2"), wantIn: "no open reservation", wantBalance: 3},
		{name: "confirmation of other credits", setup: []ledger.Event{ev(ledger.TypeGranted, "", 10), evReq(ledger.TypeReserved, "i1", 4, "r1")},
			event: evReq(ledger.TypeConfirmed, "i1", 1, "r2"), wantIn: "holds 4", wantBalance: 6, wantReserved: 4},
		{name: "confirmation without request", setup: []ledger.Event{ev(ledger.TypeGranted, "", 10), evReq(ledger.TypeReserved, "i1", 4, "r1")},
			event: ev(ledger.TypeConfirmed, "i1", 4), wantIn: "without request", wantBalance: 6, wantReserved: 4},
		{name: "confirmation repeated", setup: []ledger.Event{ev(ledger.TypeGranted, "", 10), evReq(ledger.TypeReserved, "i1", 4, "r1")},
			event: evReq(ledger.TypeConfirmed, "i1", 4, "r1"), wantIn: "already known", wantBalance: 6, wantReserved: 4},
		{name: "withdrawal repeated", setup: []ledger.Event{ev(ledger.TypeGranted, "", 10), evReq(ledger.TypeReserved, "i1", 4, "r1"),
			evReq(ledger.TypeWithdrawn, "i1", 4, "r2")},
			event: evReq(ledger.TypeWithdrawn, "i1", 4, "r2"), wantIn: "already withdrawn", wantBalance: 6, wantReserved: 4},
		{name: "withdrawal without an open reservation", setup: []ledger.Event{ev(ledger.TypeGranted, "", 3)},
			event: evReq(ledger.TypeWithdrawn, "i1", 1, "r2"), wantIn: "no open reservation", wantBalance: 3},
		{name: "event of another account", setup: []ledger.Event{ev(ledger.TypeGranted, "", 3)},
			event: other, wantIn: "a_other", wantBalance: 3},
		{name: "unknown type", setup: []ledger.Event{ev(ledger.TypeGranted, "", 3)},
			event: ev("refunded", "i1", 3), wantIn: "unknown event type", wantBalance: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := fold(t, tc.setup...)
			seq := a.Seq + 7 // gaps in the subject's sequence are normal
			err := a.Apply(tc.event, seq)
			if !errors.Is(err, ledger.ErrInconsistent) {
				t.Fatalf("err = %v, want ErrInconsistent", err)
			}
			if !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("err %q does not say %q", err, tc.wantIn)
			}
			if a.Seq != seq {
				t.Errorf("seq = %d, want %d: a bad event must not block the replica", a.Seq, seq)
			}
			if a.Balance != tc.wantBalance || a.Reserved != tc.wantReserved {
				t.Errorf("balance %d reserved %d, want %d %d", a.Balance, a.Reserved, tc.wantBalance, tc.wantReserved)
			}
			if got := a.Finished[tc.event.InvokeID].Type; got != tc.wantFinished {
				t.Errorf("finished outcome %q, want %q", got, tc.wantFinished)
			}
		})
	}
}

func TestApplyAlreadyApplied(t *testing.T) {
	t.Parallel()
	a := fold(t, ev(ledger.TypeGranted, "", 10), ev(ledger.TypeReserved, "i1", 4))
	before := a.Clone()
	for _, seq := range []uint64{0, 1, 2} {
		if err := a.Apply(ev(ledger.TypeGranted, "", 10), seq); !errors.Is(err, ledger.ErrAlreadyApplied) {
			t.Fatalf("seq %d: err = %v, want ErrAlreadyApplied", seq, err)
		}
	}
	if !reflect.DeepEqual(a, before) {
		t.Fatal("a skipped event changed the state")
	}
}

func TestApplyZeroValueTakesID(t *testing.T) {
	t.Parallel()
	var a ledger.Account
	if err := a.Apply(ev(ledger.TypeGranted, "", 2), 1); err != nil {
		t.Fatal(err)
	}
	if a.ID != acct || a.Balance != 2 {
		t.Fatalf("account %+v", a)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	a := given(t, grant("", 10))
	e := a.Reserve("i1", "req-1", 4, ttl, t0).Events[0]
	if err := a.Apply(e, a.Seq+1); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(e); err != nil {
		t.Fatalf("check of a decided event: %v", err)
	}
	cases := []struct {
		name     string
		balance  int64
		reserved int64
	}{
		{name: "balance differs", balance: 5, reserved: 4},
		{name: "reserved differs", balance: 6, reserved: 3},
		{name: "both differ", balance: 0, reserved: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bad := e
			bad.Balance, bad.Reserved = tc.balance, tc.reserved
			err := a.Check(bad)
			if !errors.Is(err, ledger.ErrMismatch) {
				t.Fatalf("err = %v, want ErrMismatch", err)
			}
			if !strings.Contains(err.Error(), "fold balance 6 reserved 4") || !strings.Contains(err.Error(), acct) {
				t.Errorf("err %q does not describe the mismatch", err)
			}
		})
	}
}

func TestEventJSON(t *testing.T) {
	t.Parallel()
	a := given(t, grant("", 10))
	reserved := a.Reserve("i1", "req-1", 4, ttl, t0).Events[0]
	granted := a.Grant("g1", 3, t0).Events[0]
	open := given(t, grant("", 10), reserve("i1", 4))
	confirmed := open.Reserve("i1", "twin", 4, ttl, t0).Events[0]
	snap := open.Snapshot(t0)
	contract := []string{"type", "account", "invoke_id", "credits", "balance", "reserved", "reason", "at"}
	cases := []struct {
		name     string
		event    ledger.Event
		wantKeys []string
	}{
		{name: "reserved", event: reserved, wantKeys: append(slices.Clone(contract), "expires_at", "request")},
		{name: "granted with id", event: granted, wantKeys: append(slices.Clone(contract), "id")},
		{name: "denied", event: a.Reserve("i2", "req-2", 99, ttl, t0).Events[0], wantKeys: append(slices.Clone(contract), "request")},
		{name: "confirmed", event: confirmed, wantKeys: append(slices.Clone(contract), "request")},
		{name: "snapshot", event: snap, wantKeys: append(slices.Clone(contract), "state")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw, err := json.Marshal(tc.event)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(maps.Keys(m))
			want := slices.Sorted(slices.Values(tc.wantKeys))
			if !slices.Equal(got, want) {
				t.Fatalf("keys %v, want %v", got, want)
			}
			if at, err := time.Parse(time.RFC3339Nano, m["at"].(string)); err != nil || !at.Equal(t0) {
				t.Fatalf("at %v: %v", m["at"], err)
			}
			var back ledger.Event
			if err := json.Unmarshal(raw, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tc.event) {
				t.Fatalf("round trip\n%+v\nwant\n%+v", back, tc.event)
			}
		})
	}
}

func TestAnswerJSON(t *testing.T) {
	t.Parallel()
	a := given(t, grant("", 1))
	cases := []struct {
		name string
		ans  ledger.Answer
		want string
	}{
		{name: "refusal", ans: a.Commit("none", t0).Answer,
			want: `{"success":false,"errMessage":"no reservation for this request: request \"none\" holds no reservation; nothing can be committed"}`},
		{name: "reserve", ans: a.Reserve("i1", "req-1", 1, ttl, t0).Answer, want: `{"success":true,"errMessage":""}`},
		{name: "pre-check", ans: a.PreCheck(1).Answer,
			want: `{"success":true,"errMessage":"","data":{"message":"This request costs 1 credit; your balance is 1 credit.","disabled":false}}`},
		{name: "control config", ans: a.ControlConfig(2).Answer,
			want: `{"success":true,"errMessage":"","data":{"message":"Not enough credits: this request costs 2 credits and your balance is 1 credit.","buttonText":"Not enough credits","disabled":true}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw, err := json.Marshal(tc.ans)
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != tc.want {
				t.Fatalf("got  %s\nwant %s", raw, tc.want)
			}
		})
	}
}

// TestNewLifeAfterRetention: an invokeId that finished at least
// MinRetention ago may be reserved (or denied) anew, in the fold as in the
// decisions once Forget dropped its outcome.
func TestNewLifeAfterRetention(t *testing.T) {
	t.Parallel()
	a := given(t, grant("", 10), reserve("i1", 4), commit("i1", t0))
	later := t0.Add(ledger.MinRetention)
	if d := a.Reserve("i1", "req-new", 4, ttl, later); !d.Repeat || len(d.Events) != 0 {
		t.Fatalf("reserve before Forget: %+v", d)
	}
	if n := a.Forget(later); n != 1 || len(a.Finished) != 0 || !a.ForgottenBefore.Equal(later) {
		t.Fatalf("forgot %d, finished %v, cutoff %s", n, a.Finished, a.ForgottenBefore)
	}
	d := a.Reserve("i1", "req-new", 4, ttl, later)
	if len(d.Events) != 1 || d.Events[0].Type != ledger.TypeReserved {
		t.Fatalf("reserve after Forget: %+v", d)
	}
	// A replica that did not forget folds it too.
	b := given(t, grant("", 10), reserve("i1", 4), commit("i1", t0))
	if err := b.Apply(d.Events[0], b.Seq+1); err != nil {
		t.Fatalf("a new life of i1: %v", err)
	}
	apply(t, a, d)
	if a.Balance != b.Balance || a.Reserved != 4 || b.Reserved != 4 || !slices.Equal(b.Open["i1"].Requests, []string{"req-new"}) {
		t.Fatalf("forgetful fold balance %d reserved %d, full fold %d %d", a.Balance, a.Reserved, b.Balance, b.Reserved)
	}
}

// TestSnapshotRoundTrip: a snapshot holds the fold; an account built from
// it (after JSON, as stored) decides and folds like the original, and a
// fold that reaches the snapshot event agrees with it.
func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	a := given(t, grant("g1", 20), reserve("i1", 4), reserve("i2", 3), commit("i2", t0), reserve("i3", 99),
		reserveAs("i1", "twin", 4), abandon("i4", "req-i4"), reserve("i5", 2), rollback("i5", t0))
	snap := a.Snapshot(t0.Add(time.Second))
	raw, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var stored ledger.Event
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	seq := a.Seq + 3
	b, err := ledger.FromSnapshot(stored, seq)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(stored, seq); err != nil {
		t.Fatalf("the fold disagrees with its own snapshot: %v", err)
	}
	if err := a.Check(stored); err != nil {
		t.Fatal(err)
	}
	if a.SnapshotSeq != seq || a.SinceSnapshot != 0 || b.SnapshotSeq != seq || b.Seq != seq {
		t.Fatalf("snapshot seq %d/%d since %d, loaded seq %d", a.SnapshotSeq, b.SnapshotSeq, a.SinceSnapshot, b.Seq)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("loaded from the snapshot\n%+v\nfolded\n%+v", b, a)
	}
	for _, cmd := range []step{reserve("i1", 4), reserve("i3", 99), commit("i1", t0), abandon("i4", "x"), rollback("i5", t0)} {
		if da, db := cmd(a), cmd(b); !reflect.DeepEqual(da, db) {
			t.Fatalf("decisions differ:\n%+v\n%+v", da, db)
		}
	}
}

// TestSnapshotInPlace: SnapshotInPlace encodes as Snapshot does, and
// Snapshotted leaves the account as Apply of that snapshot does; a snapshot
// of another state, or an old sequence, is refused and changes nothing.
func TestSnapshotInPlace(t *testing.T) {
	t.Parallel()
	a := given(t, grant("g1", 20), reserve("i1", 4), reserve("i2", 3), commit("i2", t0), reserveAs("i1", "twin", 4),
		abandon("i4", "req-i4"), reserve("i5", 2), rollback("i5", t0))
	at := t0.Add(time.Second)
	copied, inPlace := a.Snapshot(at), a.SnapshotInPlace(at)
	want, err := json.Marshal(copied)
	if err != nil {
		t.Fatal(err)
	}
	got, err := inPlace.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	var w, g ledger.Event
	if json.Unmarshal(want, &w) != nil || json.Unmarshal(got, &g) != nil || !reflect.DeepEqual(w, g) {
		t.Fatalf("in place\n%s\ncopied\n%s", got, want)
	}
	seq := a.Seq + 2
	applied := a.Clone()
	if err := applied.Apply(copied, seq); err != nil {
		t.Fatal(err)
	}
	stale := a.SnapshotInPlace(at)
	stale.State = &ledger.State{Seq: a.Seq - 1}
	other := a.SnapshotInPlace(at)
	other.Account = "a_other"
	for _, bad := range []struct {
		e    ledger.Event
		seq  uint64
		want error
	}{{inPlace, a.Seq, ledger.ErrAlreadyApplied}, {stale, seq, ledger.ErrMismatch}, {other, seq, ledger.ErrMismatch},
		{a.Snapshot(at), seq, nil}} {
		before := a.Clone()
		err := before.Snapshotted(bad.e, bad.seq)
		if !errors.Is(err, bad.want) || bad.want != nil && !reflect.DeepEqual(before, a.Clone()) {
			t.Fatalf("Snapshotted(%+v, %d): %v, want %v", bad.e.State, bad.seq, err, bad.want)
		}
	}
	if err := a.Snapshotted(inPlace, seq); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, applied) {
		t.Fatalf("Snapshotted\n%+v\nApply\n%+v", a, applied)
	}
}

func TestSnapshotDisagreement(t *testing.T) {
	t.Parallel()
	a := given(t, grant("g1", 20), reserve("i1", 4), commit("i1", t0), reserve("i2", 3))
	cases := []struct {
		name   string
		edit   func(e *ledger.Event)
		wantIn string
	}{
		{name: "balance", edit: func(e *ledger.Event) { e.Balance++; e.State.Granted++ }, wantIn: "balance"},
		{name: "an open reservation", edit: func(e *ledger.Event) { delete(e.State.Open, "i2"); e.Reserved -= 3; e.Balance += 3 }, wantIn: "open reservations"},
		{name: "an outcome", edit: func(e *ledger.Event) {
			e.State.Finished["i1"] = ledger.Outcome{Type: ledger.TypeReleased, Credits: 4, At: t0}
		}, wantIn: `"i1"`},
		{name: "a forgotten outcome is no difference", edit: func(e *ledger.Event) {
			delete(e.State.Finished, "i1")
			e.State.ForgottenBefore = t0.Add(time.Nanosecond)
		}},
		{name: "a grant id", edit: func(e *ledger.Event) { e.State.Grants["g1"] = 21 }, wantIn: "grant"},
		{name: "its position", edit: func(e *ledger.Event) { e.State.Seq-- }, wantIn: "follows"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := a.Clone()
			raw, _ := json.Marshal(c.Snapshot(t0))
			var e ledger.Event
			_ = json.Unmarshal(raw, &e)
			tc.edit(&e)
			err := c.Apply(e, c.Seq+1)
			if tc.wantIn == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ledger.ErrMismatch) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Fatalf("err = %v, want ErrMismatch naming %s", err, tc.wantIn)
			}
			if c.Balance != a.Balance || c.Reserved != a.Reserved || len(c.Open) != len(a.Open) {
				t.Fatal("a disagreeing snapshot changed the fold")
			}
		})
	}
}

func TestFromSnapshotRefusesWhatDoesNotAddUp(t *testing.T) {
	t.Parallel()
	a := given(t, grant("", 20), reserve("i1", 4))
	cases := map[string]func(e *ledger.Event){
		"not a snapshot":          func(e *ledger.Event) { e.Type = ledger.TypeGranted },
		"no state":                func(e *ledger.Event) { e.State = nil },
		"balance":                 func(e *ledger.Event) { e.Balance++ },
		"reserved":                func(e *ledger.Event) { e.Reserved++ },
		"empty reservation":       func(e *ledger.Event) { e.State.Open["i1"] = ledger.Reservation{} },
		"state after its own seq": func(e *ledger.Event) { e.State.Seq = 99 },
		"no account":              func(e *ledger.Event) { e.Account = "" },
	}
	for name, edit := range cases {
		e := a.Snapshot(t0)
		e.State.Open = maps.Clone(e.State.Open)
		edit(&e)
		if _, err := ledger.FromSnapshot(e, a.Seq+1); !errors.Is(err, ledger.ErrBadSnapshot) {
			t.Errorf("%s: err = %v, want ErrBadSnapshot", name, err)
		}
	}
}
