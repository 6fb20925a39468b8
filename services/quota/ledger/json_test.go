package ledger

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestAppendJSONMatchesMarshal compares AppendJSON with encoding/json's
// Marshal on random events, snapshots included: the same bytes when no map
// holds more than one entry (Marshal sorts map keys, AppendJSON does not),
// and the same event decoded back otherwise; an error where Marshal has one.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	seed := time.Now().UnixNano()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("random events of seed %d", seed)
		}
	})
	rng := rand.New(rand.NewSource(seed))
	for i := range 5000 {
		e := randomEvent(rng, i%3 == 0)
		want, wantErr := json.Marshal(e)
		got, err := e.AppendJSON([]byte("prefix"))
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%+v: error %v, Marshal's %v", e, err, wantErr)
		}
		if err != nil {
			continue
		}
		if !bytes.HasPrefix(got, []byte("prefix")) {
			t.Fatalf("the buffer's start was overwritten: %q", got)
		}
		got = got[len("prefix"):]
		if !json.Valid(got) {
			t.Fatalf("not JSON: %s", got)
		}
		if e.State == nil || len(e.State.Open) <= 1 && len(e.State.Finished) <= 1 && len(e.State.Grants) <= 1 {
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendJSON\n%s\nMarshal\n%s", got, want)
			}
			continue
		}
		var a, b Event
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("decoded differently:\n%s\n%s", got, want)
		}
	}
}

// TestAppendJSONKnowsEveryField fails when a field is added to the event
// types: AppendJSON must learn it (and randomEvent fill it).
func TestAppendJSONKnowsEveryField(t *testing.T) {
	t.Parallel()
	for typ, n := range map[reflect.Type]int{
		reflect.TypeFor[Event](): 12, reflect.TypeFor[State](): 7,
		reflect.TypeFor[Reservation](): 6, reflect.TypeFor[Outcome](): 4,
	} {
		if typ.NumField() != n {
			t.Errorf("%s has %d fields, AppendJSON writes %d", typ, typ.NumField(), n)
		}
	}
}

// FuzzAppendString compares the string encoding with Marshal's.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `"\<>&`, "\x00\x1f\x7f\b\f\n\r\t", "\xff\xfe", "\u2028\u2029", "é😀", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: %s, Marshal %s", s, got, want)
		}
	})
}

// randomEvent returns an event with random fields, a snapshot state when
// snapshot is set, and the odd value Marshal refuses.
func randomEvent(rng *rand.Rand, snapshot bool) Event {
	types := []EventType{TypeGranted, TypeReserved, TypeConfirmed, TypeWithdrawn, TypeCommitted, TypeReleased, TypeExpired, TypeDenied, TypeSnapshot}
	e := Event{Type: types[rng.Intn(len(types))], Account: randomString(rng), InvokeID: randomString(rng),
		Credits: randomInt(rng), Balance: randomInt(rng), Reserved: randomInt(rng), Reason: randomString(rng),
		At: randomTime(rng), ID: randomString(rng), ExpiresAt: randomTime(rng), Request: randomString(rng)}
	if !snapshot {
		return e
	}
	s := &State{Seq: rng.Uint64(), Granted: randomInt(rng), Committed: randomInt(rng), ForgottenBefore: randomTime(rng)}
	for range rng.Intn(4) {
		if s.Open == nil {
			s.Open = map[string]Reservation{}
		}
		r := Reservation{Credits: randomInt(rng), ReservedAt: randomTime(rng), ExpiresAt: randomTime(rng), Pinned: rng.Intn(2) == 0}
		for range rng.Intn(3) {
			r.Requests = append(r.Requests, randomString(rng))
		}
		for range rng.Intn(3) {
			r.Withdrawn = append(r.Withdrawn, randomString(rng))
		}
		s.Open[randomKey(rng)] = r
	}
	for range rng.Intn(4) {
		if s.Finished == nil {
			s.Finished = map[string]Outcome{}
		}
		s.Finished[randomKey(rng)] = Outcome{Type: types[rng.Intn(len(types))], Credits: randomInt(rng), Reason: randomString(rng), At: randomTime(rng)}
	}
	for range rng.Intn(4) {
		if s.Grants == nil {
			s.Grants = map[string]int64{}
		}
		s.Grants[randomKey(rng)] = randomInt(rng)
	}
	if rng.Intn(8) == 0 {
		s.Open = map[string]Reservation{} // empty, not nil: omitted all the same
	}
	e.State = s
	return e
}

func randomString(rng *rand.Rand) string {
	if rng.Intn(3) == 0 {
		return ""
	}
	pieces := []string{"a", "Z", "0", "-", "_", " ", `"`, `\`, "<", ">", "&", "\x00", "\x1f", "\x7f", "\n", "\t",
		"\b", "\f", "\r", "é", "😀", "\u2028", "\u2029", "\xff", "\xc3", "\ufffd", "/"}
	var b strings.Builder
	for range rng.Intn(12) {
		b.WriteString(pieces[rng.Intn(len(pieces))])
	}
	return b.String()
}

// randomKey is a randomString made valid UTF-8, as the keys of a State's
// maps always are: they are invokeIds and grant ids that reached the quota
// in JSON, which decodes to valid UTF-8. (Two keys that differ only in
// invalid bytes would be written as one JSON key, twice; which of the two
// values a decoder keeps then depends on the order, which AppendJSON does
// not fix.)
func randomKey(rng *rand.Rand) string { return strings.ToValidUTF8(randomString(rng), "\ufffd") }

func randomInt(rng *rand.Rand) int64 {
	switch rng.Intn(4) {
	case 0:
		return 0
	case 1:
		return -rng.Int63()
	default:
		return rng.Int63n(1 << uint(rng.Intn(62)+1))
	}
}

func randomTime(rng *rand.Rand) time.Time {
	switch rng.Intn(6) {
	case 0:
		return time.Time{}
	case 1:
		return time.Date(10000+rng.Intn(10), 1, 1, 0, 0, 0, 0, time.UTC) // Marshal refuses
	case 2:
		zone := time.FixedZone("z", (rng.Intn(48)-24)*1800)
		return time.Unix(rng.Int63n(4e9), rng.Int63n(1e9)).In(zone)
	default:
		return time.Unix(rng.Int63n(4e9), rng.Int63n(1e9)).UTC()
	}
}
