package ledger

import (
	"encoding/json"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/contract"
)

// TestEventIsTheContractsQuotaEvent: every field of contract.QuotaEvent,
// the shape readers decode QUOTA events into, is a field of Event with the
// same JSON name and type, and an event AppendJSON wrote decodes into it
// with the values it decodes to as an Event. Only the snapshot's state is
// the ledger's own.
func TestEventIsTheContractsQuotaEvent(t *testing.T) {
	t.Parallel()
	ev, qe := reflect.TypeFor[Event](), reflect.TypeFor[contract.QuotaEvent]()
	for i := range qe.NumField() {
		cf := qe.Field(i)
		f, ok := ev.FieldByName(cf.Name)
		if !ok || f.Type != cf.Type || f.Tag.Get("json") != cf.Tag.Get("json") {
			t.Errorf("contract.QuotaEvent.%s (%s, json %q) is not a field of Event", cf.Name, cf.Type, cf.Tag.Get("json"))
		}
	}
	if ev.NumField() != qe.NumField()+1 {
		t.Errorf("Event has %d fields, contract.QuotaEvent %d and State", ev.NumField(), qe.NumField())
	}

	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := range 500 {
		e := randomEvent(rng, i%3 == 0)
		data, err := e.AppendJSON(nil)
		if err != nil {
			continue // the odd value Marshal refuses too
		}
		var got contract.QuotaEvent
		var back Event
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		want := contract.QuotaEvent{Type: back.Type, Account: back.Account, InvokeID: back.InvokeID, Credits: back.Credits,
			Balance: back.Balance, Reserved: back.Reserved, Reason: back.Reason, At: back.At, ID: back.ID,
			ExpiresAt: back.ExpiresAt, Request: back.Request}
		if !got.At.Equal(want.At) || !got.ExpiresAt.Equal(want.ExpiresAt) {
			t.Fatalf("%s: times %v %v, want %v %v", data, got.At, got.ExpiresAt, want.At, want.ExpiresAt)
		}
		got.At, got.ExpiresAt, want.At, want.ExpiresAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if got != want {
			t.Fatalf("%s decoded as %+v, want %+v", data, got, want)
		}
	}
}
