package ledger_test

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/quota/ledger"
)

// model is an independent, naive statement of the ledger's rules, used as an
// oracle for random command sequences.
type model struct {
	balance int64
	held    map[string]int64     // open reservations
	expiry  map[string]time.Time // of open reservations
	outcome map[string]string    // finished: committed, released, expired, denied
	grants  map[string]int64
}

// stored is an appended event with its stream sequence.
type stored struct {
	seq uint64
	raw []byte
	typ ledger.EventType
}

func TestRandomCommands(t *testing.T) {
	t.Parallel()
	for seed := int64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			runRandom(t, rand.New(rand.NewSource(seed)), 3000)
		})
	}
}

func runRandom(t *testing.T, rng *rand.Rand, steps int) {
	a := ledger.NewAccount(acct)
	m := model{held: map[string]int64{}, expiry: map[string]time.Time{}, outcome: map[string]string{}, grants: map[string]int64{}}
	var log []stored
	var seq uint64
	now := t0
	const ttl = 30 * time.Minute
	// Commands address recent invokeIds, new ones and, now and then, ones never
	// reserved.
	next := 0
	invoke := func(fresh bool) string {
		if fresh {
			next++
		}
		return fmt.Sprint("i", next-rng.Intn(12)+1)
	}
	seen := map[ledger.EventType]int{}

	for i := range steps {
		now = now.Add(time.Duration(rng.Intn(90)) * time.Second)
		var (
			d           ledger.Decision
			wantSuccess bool
			what        string
		)
		switch op := rng.Intn(11); op {
		case 0: // grant, sometimes a removal, sometimes with an id
			n := int64(rng.Intn(24) - 8)
			if n == 0 {
				n = 1
			}
			id := ""
			if rng.Intn(2) == 0 {
				id = fmt.Sprint("g", rng.Intn(10))
			}
			what = fmt.Sprintf("grant %q %d", id, n)
			d = a.Grant(id, n, now)
			prev, dup := m.grants[id]
			switch {
			case id != "" && dup:
				wantSuccess = prev == n
			case m.balance+n < 0:
				wantSuccess = false
			default:
				wantSuccess = true
				m.balance += n
				if id != "" {
					m.grants[id] = n
				}
			}
		case 1, 2, 3: // reserve
			id, price := invoke(rng.Intn(4) != 0), int64(1+rng.Intn(8))
			what = fmt.Sprintf("reserve %s %d", id, price)
			d = a.Reserve(id, price, ttl, now)
			_, open := m.held[id]
			o, done := m.outcome[id]
			switch {
			case open:
				wantSuccess = true
			case done:
				wantSuccess = o != "denied"
			case m.balance < price:
				m.outcome[id] = "denied"
			default:
				wantSuccess = true
				m.balance -= price
				m.held[id] = price
				m.expiry[id] = now.Add(ttl)
			}
		case 4, 5, 6, 7: // commit or rollback
			id := invoke(false)
			typ, verb := "committed", a.Commit
			if rng.Intn(3) == 0 {
				typ, verb = "released", a.Rollback
			}
			what = fmt.Sprintf("%s %s", typ, id)
			d = verb(id, now)
			n, open := m.held[id]
			switch {
			case open && now.Before(m.expiry[id]):
				wantSuccess = true
				delete(m.held, id)
				m.outcome[id] = typ
				if typ == "released" {
					m.balance += n
				}
			case !open:
				wantSuccess = m.outcome[id] == typ
			}
		case 10: // an abandonment (the answer to a reservation was lost)
			id := invoke(rng.Intn(2) == 0)
			what = "abandon " + id
			d = a.Abandon(id, now)
			wantSuccess = true
			n, open := m.held[id]
			_, done := m.outcome[id]
			switch {
			case open:
				delete(m.held, id)
				m.outcome[id] = "released"
				m.balance += n
			case !done:
				m.outcome[id] = "denied"
			}
		default: // the expiry sweeper
			what = "sweep"
			for _, id := range a.Due(now) {
				d := a.Expire(id, now)
				if !d.Answer.Success || len(d.Events) != 1 {
					t.Fatalf("step %d: expire %s: %+v", i, id, d)
				}
				seq += uint64(1 + rng.Intn(2))
				log = append(log, appendEvent(t, a, d.Events[0], seq))
				m.balance += m.held[id]
				delete(m.held, id)
				m.outcome[id] = "expired"
			}
			for id, at := range m.expiry {
				if _, open := m.held[id]; open && !now.Before(at) {
					t.Fatalf("step %d: %s is due but the sweep left it", i, id)
				}
			}
			continue
		}

		if d.Answer.Success != wantSuccess {
			t.Fatalf("step %d %s: success %v, model says %v (%q)", i, what, d.Answer.Success, wantSuccess, d.Answer.ErrMessage)
		}
		if len(d.Events) > 1 {
			t.Fatalf("step %d %s: %d events", i, what, len(d.Events))
		}
		for _, e := range d.Events {
			seq += uint64(1 + rng.Intn(2)) // other subjects interleave
			log = append(log, appendEvent(t, a, e, seq))
		}
		if a.Balance != m.balance {
			t.Fatalf("step %d %s: balance %d, model %d", i, what, a.Balance, m.balance)
		}
		if a.Balance < 0 {
			t.Fatalf("step %d %s: negative balance %d", i, what, a.Balance)
		}
		var held int64
		for _, r := range a.Open {
			held += r.Credits
		}
		if a.Reserved != held || len(a.Open) != len(m.held) {
			t.Fatalf("step %d %s: reserved %d, open reservations hold %d", i, what, a.Reserved, held)
		}
		if a.Balance != a.Granted-a.Committed-a.Reserved {
			t.Fatalf("step %d %s: balance %d != %d - %d - %d", i, what, a.Balance, a.Granted, a.Committed, a.Reserved)
		}
	}

	// A fresh replica replaying the stored stream reaches the same state.
	replica := ledger.NewAccount(acct)
	for _, s := range log {
		var e ledger.Event
		if err := json.Unmarshal(s.raw, &e); err != nil {
			t.Fatal(err)
		}
		if err := replica.Apply(e, s.seq); err != nil {
			t.Fatalf("replay seq %d: %v", s.seq, err)
		}
		if err := replica.Check(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
	}
	if !reflect.DeepEqual(replica, a) {
		t.Fatalf("replayed state differs:\n%+v\nlive:\n%+v", replica, a)
	}
	for _, s := range log {
		seen[s.typ]++
	}
	t.Logf("events: %v", seen)
	for _, typ := range []ledger.EventType{ledger.TypeGranted, ledger.TypeReserved, ledger.TypeCommitted,
		ledger.TypeReleased, ledger.TypeExpired, ledger.TypeDenied} {
		if seen[typ] < 10 {
			t.Fatalf("only %d %s events in %d steps (%v): the sequence exercises too little", seen[typ], typ, steps, seen)
		}
	}
}

// appendEvent stores e as JSON, as the stream would, and folds it into a.
func appendEvent(t *testing.T, a *ledger.Account, e ledger.Event, seq uint64) stored {
	t.Helper()
	if e.Balance < 0 || e.Reserved < 0 {
		t.Fatalf("event with balance %d reserved %d", e.Balance, e.Reserved)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(e, seq); err != nil {
		t.Fatalf("apply %s %q: %v", e.Type, e.InvokeID, err)
	}
	if err := a.Check(e); err != nil {
		t.Fatal(err)
	}
	return stored{seq: seq, raw: raw, typ: e.Type}
}
