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
	e := a.Reserve("i1", 4, ttl, t0).Events[0]
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
	reserved := a.Reserve("i1", 4, ttl, t0).Events[0]
	granted := a.Grant("g1", 3, t0).Events[0]
	contract := []string{"type", "account", "invoke_id", "credits", "balance", "reserved", "reason", "at"}
	cases := []struct {
		name     string
		event    ledger.Event
		wantKeys []string
	}{
		{name: "reserved", event: reserved, wantKeys: append(slices.Clone(contract), "expires_at")},
		{name: "granted with id", event: granted, wantKeys: append(slices.Clone(contract), "id")},
		{name: "denied", event: a.Reserve("i2", 99, ttl, t0).Events[0], wantKeys: contract},
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
		{name: "reserve", ans: a.Reserve("i1", 1, ttl, t0).Answer, want: `{"success":true,"errMessage":""}`},
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
