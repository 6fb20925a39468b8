package ledger_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/quota/ledger"
)

const acct = "a_testaccount0000000000000"

var (
	t0  = time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
	ttl = time.Hour
)

// step is one command against an account.
type step func(a *ledger.Account) ledger.Decision

func grant(id string, n int64) step {
	return func(a *ledger.Account) ledger.Decision { return a.Grant(id, n, t0) }
}

// reserve reserves price credits for id, answering the decide request
// "req-<id>".
func reserve(id string, price int64) step {
	return reserveAs(id, "req-"+id, price)
}

// reserveAs reserves price credits for id, answering the decide request req.
func reserveAs(id, req string, price int64) step {
	return func(a *ledger.Account) ledger.Decision { return a.Reserve(id, req, price, ttl, t0) }
}

// abandon abandons the decide request req for id.
func abandon(id, req string) step {
	return func(a *ledger.Account) ledger.Decision { return a.Abandon(id, req, t0) }
}

func commit(id string, at time.Time) step {
	return func(a *ledger.Account) ledger.Decision { return a.Commit(id, at) }
}

func rollback(id string, at time.Time) step {
	return func(a *ledger.Account) ledger.Decision { return a.Rollback(id, at) }
}

func expire(id string, at time.Time) step {
	return func(a *ledger.Account) ledger.Decision { return a.Expire(id, at) }
}

// apply folds the events of d into a as the adapter would after appending
// them, and checks that the balances the decision computed agree with the
// fold.
func apply(t *testing.T, a *ledger.Account, d ledger.Decision) {
	t.Helper()
	if len(d.Events) > 1 {
		t.Fatalf("decision with %d events", len(d.Events))
	}
	for _, e := range d.Events {
		if err := a.Apply(e, a.Seq+1); err != nil {
			t.Fatalf("apply %s: %v", e.Type, err)
		}
		if err := a.Check(e); err != nil {
			t.Fatalf("fold disagrees with the decision: %v", err)
		}
	}
}

// legacyReserve is the reserved event of a replica that named no requests.
func legacyReserve(id string, price int64) step {
	return func(a *ledger.Account) ledger.Decision {
		d := a.Reserve(id, "req", price, ttl, t0)
		for i := range d.Events {
			d.Events[i].Request = ""
		}
		return d
	}
}

// pinned is a reservation of 4 credits for i1 that more than MaxRequests
// requests were told is held.
func pinned() []step {
	steps := []step{grant("", 10), reserve("i1", 4)}
	for k := range ledger.MaxRequests {
		steps = append(steps, reserveAs("i1", fmt.Sprint("twin", k), 4))
	}
	return steps
}

// given returns an account after the steps, each applied.
func given(t *testing.T, steps ...step) *ledger.Account {
	t.Helper()
	a := ledger.NewAccount(acct)
	for _, s := range steps {
		apply(t, a, s(a))
	}
	return a
}

func TestDecisions(t *testing.T) {
	t.Parallel()
	due := t0.Add(ttl)
	before := due.Add(-time.Nanosecond)
	cases := []struct {
		name         string
		setup        []step
		cmd          step
		wantSuccess  bool
		wantErr      error
		wantEvent    ledger.EventType // "" = nothing appended
		wantRepeat   bool
		wantBalance  int64
		wantReserved int64
	}{
		// Grants.
		{name: "grant", cmd: grant("", 10), wantSuccess: true, wantEvent: ledger.TypeGranted, wantBalance: 10},
		{name: "grant with id", cmd: grant("g1", 10), wantSuccess: true, wantEvent: ledger.TypeGranted, wantBalance: 10},
		{name: "grant without id twice adds twice", setup: []step{grant("", 10)}, cmd: grant("", 10),
			wantSuccess: true, wantEvent: ledger.TypeGranted, wantBalance: 20},
		{name: "repeated grant id appends nothing", setup: []step{grant("g1", 10)}, cmd: grant("g1", 10),
			wantSuccess: true, wantRepeat: true, wantBalance: 10},
		{name: "grant id reused with other credits", setup: []step{grant("g1", 10)}, cmd: grant("g1", 20),
			wantErr: ledger.ErrInvalidCommand, wantBalance: 10},
		{name: "zero grant", cmd: grant("", 0), wantErr: ledger.ErrInvalidCommand},
		{name: "grant above MaxCredits", cmd: grant("", ledger.MaxCredits+1), wantErr: ledger.ErrInvalidCommand},
		{name: "grant pushing balance above MaxCredits", setup: []step{grant("", ledger.MaxCredits)}, cmd: grant("", 1),
			wantErr: ledger.ErrInvalidCommand, wantBalance: ledger.MaxCredits},
		{name: "negative grant", setup: []step{grant("", 10)}, cmd: grant("", -6),
			wantSuccess: true, wantEvent: ledger.TypeGranted, wantBalance: 4},
		{name: "negative grant down to zero", setup: []step{grant("", 10)}, cmd: grant("r", -10),
			wantSuccess: true, wantEvent: ledger.TypeGranted, wantBalance: 0},
		{name: "negative grant below zero refused", setup: []step{grant("", 10)}, cmd: grant("", -11),
			wantErr: ledger.ErrInsufficientCredits, wantBalance: 10},
		{name: "negative grant cannot take reserved credits", setup: []step{grant("", 10), reserve("i1", 8)}, cmd: grant("", -3),
			wantErr: ledger.ErrInsufficientCredits, wantBalance: 2, wantReserved: 8},
		{name: "negative grant of the unreserved part", setup: []step{grant("", 10), reserve("i1", 8)}, cmd: grant("", -2),
			wantSuccess: true, wantEvent: ledger.TypeGranted, wantBalance: 0, wantReserved: 8},
		{name: "refused grant does not use up its id", setup: []step{grant("", 10), grant("g1", -50)}, cmd: grant("g1", -5),
			wantSuccess: true, wantEvent: ledger.TypeGranted, wantBalance: 5},

		// Reserve.
		{name: "reserve", setup: []step{grant("", 10)}, cmd: reserve("i1", 4),
			wantSuccess: true, wantEvent: ledger.TypeReserved, wantBalance: 6, wantReserved: 4},
		{name: "reserve the whole balance", setup: []step{grant("", 10)}, cmd: reserve("i1", 10),
			wantSuccess: true, wantEvent: ledger.TypeReserved, wantBalance: 0, wantReserved: 10},
		{name: "reserve more than the balance is denied", setup: []step{grant("", 10)}, cmd: reserve("i1", 11),
			wantErr: ledger.ErrInsufficientCredits, wantEvent: ledger.TypeDenied, wantBalance: 10},
		{name: "reserve on an empty account is denied", cmd: reserve("i1", 1),
			wantErr: ledger.ErrInsufficientCredits, wantEvent: ledger.TypeDenied},
		{name: "reserved credits are not available", setup: []step{grant("", 10), reserve("i1", 6)}, cmd: reserve("i2", 5),
			wantErr: ledger.ErrInsufficientCredits, wantEvent: ledger.TypeDenied, wantBalance: 4, wantReserved: 6},
		// Repeats of a reserve (docs/quota.md, "Repeats"): success only while
		// the credits are held.
		{name: "repeated reserve while open, same request", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: reserve("i1", 4),
			wantSuccess: true, wantBalance: 6, wantReserved: 4},
		{name: "repeated reserve while open, another request, confirms", setup: []step{grant("", 10), reserve("i1", 4)},
			cmd: reserveAs("i1", "twin", 4), wantSuccess: true, wantEvent: ledger.TypeConfirmed, wantBalance: 6, wantReserved: 4},
		{name: "repeated reserve of a confirmed reservation", setup: []step{grant("", 10), reserve("i1", 4), reserveAs("i1", "twin", 4)},
			cmd: reserveAs("i1", "third", 4), wantSuccess: true, wantEvent: ledger.TypeConfirmed, wantBalance: 6, wantReserved: 4},
		{name: "repeated reserve by a request told already", setup: []step{grant("", 10), reserve("i1", 4), reserveAs("i1", "twin", 4)},
			cmd: reserveAs("i1", "twin", 4), wantSuccess: true, wantBalance: 6, wantReserved: 4},
		{name: "late decision of a request abandoned first", setup: []step{grant("", 10), reserve("i1", 4), abandon("i1", "late")},
			cmd: reserveAs("i1", "late", 4), wantErr: ledger.ErrAbandoned, wantRepeat: true, wantBalance: 6, wantReserved: 4},
		{name: "repeated reserve of a pinned reservation", setup: pinned(),
			cmd: reserveAs("i1", "one-more", 4), wantSuccess: true, wantBalance: 6, wantReserved: 4},
		{name: "repeated reserve of a reservation stored without request", setup: []step{grant("", 10), legacyReserve("i1", 4)},
			cmd: reserveAs("i1", "other", 4), wantSuccess: true, wantBalance: 6, wantReserved: 4},
		{name: "reserve that names no request", setup: []step{grant("", 10)}, cmd: reserveAs("i1", "", 4),
			wantErr: ledger.ErrInvalidCommand, wantBalance: 10},
		{name: "repeated reserve at another price", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: reserveAs("i1", "twin", 5),
			wantErr: ledger.ErrConflictingRequest, wantRepeat: true, wantBalance: 6, wantReserved: 4},
		{name: "repeated reserve past expires_at", setup: []step{grant("", 10), reserve("i1", 4)},
			cmd:     func(a *ledger.Account) ledger.Decision { return a.Reserve("i1", "twin", 4, ttl, due) },
			wantErr: ledger.ErrExpired, wantRepeat: true, wantBalance: 6, wantReserved: 4},
		{name: "repeated reserve after commit", setup: []step{grant("", 10), reserve("i1", 4), commit("i1", t0)}, cmd: reserveAs("i1", "twin", 4),
			wantSuccess: true, wantRepeat: true, wantBalance: 6},
		{name: "repeated reserve after commit, another price", setup: []step{grant("", 10), reserve("i1", 4), commit("i1", t0)}, cmd: reserve("i1", 1),
			wantErr: ledger.ErrConflictingRequest, wantRepeat: true, wantBalance: 6},
		{name: "repeated reserve after rollback", setup: []step{grant("", 10), reserve("i1", 4), rollback("i1", t0)}, cmd: reserve("i1", 4),
			wantErr: ledger.ErrFinished, wantRepeat: true, wantBalance: 10},
		{name: "repeated reserve after expiry", setup: []step{grant("", 10), reserve("i1", 4), expire("i1", due)}, cmd: reserve("i1", 4),
			wantErr: ledger.ErrExpired, wantRepeat: true, wantBalance: 10},
		{name: "repeated reserve after its abandonment", setup: []step{grant("", 10), reserve("i1", 4), abandon("i1", "req-i1")}, cmd: reserve("i1", 4),
			wantErr: ledger.ErrAbandoned, wantRepeat: true, wantBalance: 10},
		{name: "reserve after an abandonment that came first", setup: []step{grant("", 10), abandon("i1", "req-i1")}, cmd: reserveAs("i1", "twin", 4),
			wantErr: ledger.ErrAbandoned, wantRepeat: true, wantBalance: 10},
		{name: "repeated denial", setup: []step{grant("", 3), reserve("i1", 4)}, cmd: reserve("i1", 4),
			wantErr: ledger.ErrInsufficientCredits, wantRepeat: true, wantBalance: 3},
		{name: "repeated denial stays denied after a grant", setup: []step{grant("", 3), reserve("i1", 4), grant("", 10)}, cmd: reserve("i1", 4),
			wantErr: ledger.ErrInsufficientCredits, wantRepeat: true, wantBalance: 13},
		{name: "repeated denial at another price", setup: []step{grant("", 3), reserve("i1", 4)}, cmd: reserve("i1", 1),
			wantErr: ledger.ErrInsufficientCredits, wantRepeat: true, wantBalance: 3},
		{name: "reserve with an over-long invokeId", setup: []step{grant("", 10)}, cmd: reserve(strings.Repeat("x", ledger.MaxInvokeID+1), 4),
			wantErr: ledger.ErrInvalidCommand, wantBalance: 10},
		{name: "reserve with the longest invokeId", setup: []step{grant("", 10)}, cmd: reserve(strings.Repeat("x", ledger.MaxInvokeID), 4),
			wantSuccess: true, wantEvent: ledger.TypeReserved, wantBalance: 6, wantReserved: 4},

		// Abandon: exactly what the abandoned request was answered.
		{name: "abandon the request that reserved", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: abandon("i1", "req-i1"),
			wantSuccess: true, wantEvent: ledger.TypeReleased, wantBalance: 10},
		{name: "abandon another request withdraws it and leaves the reservation", setup: []step{grant("", 10), reserve("i1", 4)},
			cmd: abandon("i1", "twin"), wantSuccess: true, wantEvent: ledger.TypeWithdrawn, wantBalance: 6, wantReserved: 4},
		{name: "abandon one of two requests told it is held", setup: []step{grant("", 10), reserve("i1", 4), reserveAs("i1", "twin", 4)},
			cmd: abandon("i1", "req-i1"), wantSuccess: true, wantEvent: ledger.TypeWithdrawn, wantBalance: 6, wantReserved: 4},
		{name: "abandon the last request told it is held",
			setup: []step{grant("", 10), reserve("i1", 4), reserveAs("i1", "twin", 4), abandon("i1", "req-i1")},
			cmd:   abandon("i1", "twin"), wantSuccess: true, wantEvent: ledger.TypeReleased, wantBalance: 10},
		{name: "abandon a withdrawn request again", setup: []step{grant("", 10), reserve("i1", 4), abandon("i1", "twin")},
			cmd: abandon("i1", "twin"), wantSuccess: true, wantRepeat: true, wantBalance: 6, wantReserved: 4},
		{name: "abandon of a pinned reservation leaves it", setup: pinned(),
			cmd: abandon("i1", "req-i1"), wantSuccess: true, wantRepeat: true, wantBalance: 6, wantReserved: 4},
		{name: "abandon before any decision", setup: []step{grant("", 10)}, cmd: abandon("i1", "req-i1"),
			wantSuccess: true, wantEvent: ledger.TypeDenied, wantBalance: 10},
		{name: "abandon after commit", setup: []step{grant("", 10), reserve("i1", 4), commit("i1", t0)}, cmd: abandon("i1", "req-i1"),
			wantSuccess: true, wantRepeat: true, wantBalance: 6},
		{name: "abandon after denial", setup: []step{grant("", 3), reserve("i1", 4)}, cmd: abandon("i1", "req-i1"),
			wantSuccess: true, wantRepeat: true, wantBalance: 3},
		{name: "abandon that names no request", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: abandon("i1", ""),
			wantErr: ledger.ErrInvalidCommand, wantBalance: 6, wantReserved: 4},
		{name: "abandon of a reservation stored without request", setup: []step{grant("", 10), legacyReserve("i1", 4)}, cmd: abandon("i1", "any"),
			wantSuccess: true, wantRepeat: true, wantBalance: 6, wantReserved: 4},

		{name: "reserve without invokeId", setup: []step{grant("", 10)}, cmd: reserve("", 4),
			wantErr: ledger.ErrInvalidCommand, wantBalance: 10},
		{name: "reserve of zero credits", setup: []step{grant("", 10)}, cmd: reserve("i1", 0),
			wantErr: ledger.ErrInvalidCommand, wantBalance: 10},
		{name: "reserve without ttl", setup: []step{grant("", 10)},
			cmd:     func(a *ledger.Account) ledger.Decision { return a.Reserve("i1", "r", 1, 0, t0) },
			wantErr: ledger.ErrInvalidCommand, wantBalance: 10},

		// Commit.
		{name: "commit", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: commit("i1", t0),
			wantSuccess: true, wantEvent: ledger.TypeCommitted, wantBalance: 6},
		{name: "commit just before expiry", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: commit("i1", before),
			wantSuccess: true, wantEvent: ledger.TypeCommitted, wantBalance: 6},
		{name: "repeated commit", setup: []step{grant("", 10), reserve("i1", 4), commit("i1", t0)}, cmd: commit("i1", t0),
			wantSuccess: true, wantRepeat: true, wantBalance: 6},
		{name: "commit of unknown invokeId", setup: []step{grant("", 10)}, cmd: commit("nope", t0),
			wantErr: ledger.ErrUnknownReservation, wantBalance: 10},
		{name: "commit after rollback", setup: []step{grant("", 10), reserve("i1", 4), rollback("i1", t0)}, cmd: commit("i1", t0),
			wantErr: ledger.ErrFinished, wantBalance: 10},
		{name: "commit after denial", setup: []step{grant("", 3), reserve("i1", 4)}, cmd: commit("i1", t0),
			wantErr: ledger.ErrFinished, wantBalance: 3},
		{name: "commit after abandonment", setup: []step{grant("", 10), reserve("i1", 4), abandon("i1", "req-i1")}, cmd: commit("i1", t0),
			wantErr: ledger.ErrAbandoned, wantBalance: 10},
		{name: "commit of a confirmed reservation", setup: []step{grant("", 10), reserve("i1", 4), reserveAs("i1", "twin", 4)}, cmd: commit("i1", t0),
			wantSuccess: true, wantEvent: ledger.TypeCommitted, wantBalance: 6},
		{name: "commit after expiry", setup: []step{grant("", 10), reserve("i1", 4), expire("i1", due)}, cmd: commit("i1", due),
			wantErr: ledger.ErrExpired, wantBalance: 10},
		{name: "commit at expires_at before the expired event", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: commit("i1", due),
			wantErr: ledger.ErrExpired, wantBalance: 6, wantReserved: 4},

		// Rollback.
		{name: "rollback", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: rollback("i1", t0),
			wantSuccess: true, wantEvent: ledger.TypeReleased, wantBalance: 10},
		{name: "repeated rollback", setup: []step{grant("", 10), reserve("i1", 4), rollback("i1", t0)}, cmd: rollback("i1", t0),
			wantSuccess: true, wantRepeat: true, wantBalance: 10},
		{name: "rollback of unknown invokeId", setup: []step{grant("", 10)}, cmd: rollback("nope", t0),
			wantErr: ledger.ErrUnknownReservation, wantBalance: 10},
		{name: "rollback after commit", setup: []step{grant("", 10), reserve("i1", 4), commit("i1", t0)}, cmd: rollback("i1", t0),
			wantErr: ledger.ErrFinished, wantBalance: 6},
		{name: "rollback after denial", setup: []step{grant("", 3), reserve("i1", 4)}, cmd: rollback("i1", t0),
			wantErr: ledger.ErrFinished, wantBalance: 3},
		{name: "rollback after expiry", setup: []step{grant("", 10), reserve("i1", 4), expire("i1", due)}, cmd: rollback("i1", due),
			wantErr: ledger.ErrExpired, wantBalance: 10},
		{name: "rollback past expires_at before the expired event", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: rollback("i1", due.Add(time.Minute)),
			wantErr: ledger.ErrExpired, wantBalance: 6, wantReserved: 4},

		// Expire.
		{name: "expire at expires_at", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: expire("i1", due),
			wantSuccess: true, wantEvent: ledger.TypeExpired, wantBalance: 10},
		{name: "expire late", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: expire("i1", due.Add(24*time.Hour)),
			wantSuccess: true, wantEvent: ledger.TypeExpired, wantBalance: 10},
		{name: "expire before due", setup: []step{grant("", 10), reserve("i1", 4)}, cmd: expire("i1", before),
			wantErr: ledger.ErrNotDue, wantBalance: 6, wantReserved: 4},
		{name: "expire after commit", setup: []step{grant("", 10), reserve("i1", 4), commit("i1", t0)}, cmd: expire("i1", due),
			wantSuccess: true, wantRepeat: true, wantBalance: 6},
		{name: "expire after rollback", setup: []step{grant("", 10), reserve("i1", 4), rollback("i1", t0)}, cmd: expire("i1", due),
			wantSuccess: true, wantRepeat: true, wantBalance: 10},
		{name: "repeated expire", setup: []step{grant("", 10), reserve("i1", 4), expire("i1", due)}, cmd: expire("i1", due),
			wantSuccess: true, wantRepeat: true, wantBalance: 10},
		{name: "expire of unknown invokeId", setup: []step{grant("", 10)}, cmd: expire("nope", due),
			wantErr: ledger.ErrUnknownReservation, wantBalance: 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := given(t, tc.setup...)
			snapshot := a.Clone()
			d := tc.cmd(a)
			if !reflect.DeepEqual(a, snapshot) {
				t.Fatal("the decision modified the account")
			}
			ans := d.Answer
			if ans.Success != tc.wantSuccess {
				t.Errorf("success = %v, want %v (%q)", ans.Success, tc.wantSuccess, ans.ErrMessage)
			}
			if tc.wantErr == nil && ans.Err != nil {
				t.Errorf("err = %v, want nil", ans.Err)
			}
			if tc.wantErr != nil && !errors.Is(ans.Err, tc.wantErr) {
				t.Errorf("err = %v, want %v", ans.Err, tc.wantErr)
			}
			if ans.Success != (ans.ErrMessage == "") {
				t.Errorf("success %v with errMessage %q", ans.Success, ans.ErrMessage)
			}
			if d.Repeat != tc.wantRepeat {
				t.Errorf("repeat = %v, want %v", d.Repeat, tc.wantRepeat)
			}
			switch {
			case tc.wantEvent == "" && len(d.Events) != 0:
				t.Errorf("appended %s, want nothing", d.Events[0].Type)
			case tc.wantEvent != "" && (len(d.Events) != 1 || d.Events[0].Type != tc.wantEvent):
				t.Errorf("events = %+v, want one %s", d.Events, tc.wantEvent)
			}
			for _, e := range d.Events {
				if e.Account != acct {
					t.Errorf("event account %q", e.Account)
				}
				if e.Balance < 0 || e.Reserved < 0 {
					t.Errorf("event balance %d reserved %d", e.Balance, e.Reserved)
				}
			}
			apply(t, a, d)
			if a.Balance != tc.wantBalance || a.Reserved != tc.wantReserved {
				t.Errorf("balance %d reserved %d, want %d %d", a.Balance, a.Reserved, tc.wantBalance, tc.wantReserved)
			}
			if a.Balance != a.Granted-a.Committed-a.Reserved {
				t.Errorf("balance %d != granted %d - committed %d - reserved %d", a.Balance, a.Granted, a.Committed, a.Reserved)
			}
		})
	}
}

func TestReserveEvents(t *testing.T) {
	t.Parallel()
	a := given(t, grant("", 10))
	d := a.Reserve("i1", "req-1", 4, ttl, t0.In(time.FixedZone("X", 3600)))
	e := d.Events[0]
	want := ledger.Event{Type: ledger.TypeReserved, Account: acct, InvokeID: "i1", Credits: 4,
		Balance: 6, Reserved: 4, At: t0, ExpiresAt: t0.Add(ttl), Request: "req-1"}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("event\n%+v\nwant\n%+v", e, want)
	}

	d = a.Reserve("i2", "req-2", 11, ttl, t0)
	e = d.Events[0]
	if e.Type != ledger.TypeDenied || e.Credits != 11 || e.Balance != 10 || e.Reserved != 0 || !e.ExpiresAt.IsZero() {
		t.Fatalf("denied event %+v", e)
	}
	if e.Reason == "" || e.Reason != d.Answer.ErrMessage {
		t.Fatalf("reason %q, errMessage %q", e.Reason, d.Answer.ErrMessage)
	}
	for _, s := range []string{"11 credits", "10 credits"} {
		if !strings.Contains(e.Reason, s) {
			t.Errorf("reason %q does not name %q", e.Reason, s)
		}
	}
}

// TestRepeatedDenialIsTheFirstAnswer checks that a repeated denial answers
// exactly what the first one did, even after the balance changed.
func TestRepeatedDenialIsTheFirstAnswer(t *testing.T) {
	t.Parallel()
	a := given(t, grant("", 3))
	first := a.Reserve("i1", "req-1", 4, ttl, t0)
	apply(t, a, first)
	apply(t, a, a.Grant("", 100, t0))
	again := a.Reserve("i1", "req-2", 4, ttl, t0.Add(time.Minute))
	if len(again.Events) != 0 || !again.Repeat {
		t.Fatalf("repeat appended %+v", again.Events)
	}
	if again.Answer.Success || again.Answer.ErrMessage != first.Answer.ErrMessage {
		t.Fatalf("repeat answered %+v, first %+v", again.Answer, first.Answer)
	}
	if !strings.Contains(again.Answer.ErrMessage, "3 credits") {
		t.Fatalf("message %q does not state the balance at the time", again.Answer.ErrMessage)
	}
}

func TestControlConfigAndPreCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		setup        []step
		price        int64
		wantDisabled bool
		wantIn       []string
	}{
		{name: "enough", setup: []step{grant("", 10)}, price: 4, wantIn: []string{"10 credits", "4 credits"}},
		{name: "exactly enough", setup: []step{grant("", 10)}, price: 10, wantIn: []string{"10 credits"}},
		{name: "one credit", setup: []step{grant("", 1)}, price: 1, wantIn: []string{"1 credit"}},
		{name: "not enough", setup: []step{grant("", 10)}, price: 11, wantDisabled: true, wantIn: []string{"10 credits", "11 credits", "Not enough"}},
		{name: "empty account", price: 1, wantDisabled: true, wantIn: []string{"0 credits"}},
		{name: "held credits are named", setup: []step{grant("", 10), reserve("i1", 7)}, price: 4, wantDisabled: true,
			wantIn: []string{"3 credits", "7 credits held"}},
		{name: "no valid price", setup: []step{grant("", 10)}, price: 0, wantDisabled: true, wantIn: []string{"10 credits", "no valid price"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := given(t, tc.setup...)
			for _, d := range []ledger.Decision{a.ControlConfig(tc.price), a.PreCheck(tc.price)} {
				if len(d.Events) != 0 || !d.Answer.Success || d.Answer.Data == nil {
					t.Fatalf("decision %+v", d)
				}
				if d.Answer.Data.Disabled != tc.wantDisabled {
					t.Errorf("disabled = %v, want %v", d.Answer.Data.Disabled, tc.wantDisabled)
				}
				for _, s := range tc.wantIn {
					if !strings.Contains(d.Answer.Data.Message, s) {
						t.Errorf("message %q does not contain %q", d.Answer.Data.Message, s)
					}
				}
			}
			if a.ControlConfig(tc.price).Answer.Data.ButtonText == "" {
				t.Error("control config without button text")
			}
			if a.PreCheck(tc.price).Answer.Data.ButtonText != "" {
				t.Error("pre-check with button text")
			}
		})
	}
}

func TestDue(t *testing.T) {
	t.Parallel()
	a := given(t, grant("", 10), reserve("b", 1), reserve("a", 1), reserve("c", 1), commit("c", t0))
	if got := a.Due(t0.Add(ttl - 1)); len(got) != 0 {
		t.Fatalf("due early: %v", got)
	}
	if got := a.Due(t0.Add(ttl)); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("due = %v", got)
	}
}

func TestClone(t *testing.T) {
	t.Parallel()
	a := given(t, grant("g", 10), reserve("i1", 1), reserve("i2", 2), rollback("i2", t0))
	c := a.Clone()
	apply(t, c, c.Grant("g2", 5, t0))
	apply(t, c, c.Commit("i1", t0))
	if len(a.Grants) != 1 || len(a.Open) != 1 || len(a.Finished) != 1 || a.Balance != 9 || a.Reserved != 1 {
		t.Fatalf("the clone shares state with the original: %+v", a)
	}
}

// TestAbandonEitherOrder: an apiAccessPreInvoke whose answer was lost ends
// with nothing held, whether the abandonment is decided after the
// reservation (released at once) or before it (the late reservation is
// refused); repeats change nothing, and a commit after it is refused.
func TestAbandonEitherOrder(t *testing.T) {
	t.Parallel()
	later := t0.Add(time.Second)

	after := given(t, grant("", 10), reserve("i1", 4))
	d := after.Abandon("i1", "req-i1", later)
	if !d.Answer.Success || len(d.Events) != 1 || d.Events[0].Type != ledger.TypeReleased || d.Events[0].Credits != 4 || d.Events[0].Reason == "" {
		t.Fatalf("abandon of an open reservation: %+v", d)
	}
	apply(t, after, d)
	if after.Balance != 10 || after.Reserved != 0 || len(after.Open) != 0 {
		t.Fatalf("after abandon: balance %d, reserved %d, open %d", after.Balance, after.Reserved, len(after.Open))
	}
	if d := after.Commit("i1", later); d.Answer.Success || !errors.Is(d.Answer.Err, ledger.ErrAbandoned) || len(d.Events) != 0 {
		t.Fatalf("commit after abandon: %+v", d)
	}

	before := given(t, grant("", 10))
	d = before.Abandon("i2", "req-i2", t0)
	if !d.Answer.Success || len(d.Events) != 1 || d.Events[0].Type != ledger.TypeDenied || d.Events[0].Credits != 0 {
		t.Fatalf("abandon of an undecided invokeId: %+v", d)
	}
	apply(t, before, d)
	late := before.Reserve("i2", "req-i2", 4, ttl, later)
	if late.Answer.Success || !late.Repeat || len(late.Events) != 0 || !errors.Is(late.Answer.Err, ledger.ErrAbandoned) || late.Answer.ErrMessage == "" {
		t.Fatalf("reservation after abandon: %+v", late)
	}
	if before.Balance != 10 || before.Reserved != 0 {
		t.Fatalf("after a late reservation: balance %d, reserved %d", before.Balance, before.Reserved)
	}

	for name, a := range map[string]*ledger.Account{"released": after, "denied": before} {
		for _, id := range []string{"i1", "i2"} {
			if _, done := a.Finished[id]; !done {
				continue
			}
			if d := a.Abandon(id, "req-"+id, later); !d.Answer.Success || !d.Repeat || len(d.Events) != 0 {
				t.Errorf("%s: abandon again of %s: %+v", name, id, d)
			}
		}
	}
	if d := before.Abandon("", "req", t0); d.Answer.Success || !errors.Is(d.Answer.Err, ledger.ErrInvalidCommand) {
		t.Fatalf("abandon without invokeId: %+v", d)
	}
}
