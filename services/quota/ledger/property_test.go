package ledger_test

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/quota/ledger"
)

// model is an independent, naive statement of the ledger's rules, used as an
// oracle for random command sequences.
type model struct {
	balance   int64
	held      map[string]int64     // open reservations
	expiry    map[string]time.Time // of open reservations
	requests  map[string][]string  // told an open reservation is held, not abandoned since
	withdrawn map[string][]string  // abandoned before their decision, while it was open
	pinned    map[string]bool      // open reservations no abandonment releases
	outcome   map[string]string    // finished: committed, released, abandoned, expired, denied
	credits   map[string]int64     // of finished invokeIds
	doneAt    map[string]time.Time // of finished invokeIds
	grants    map[string]int64
}

func newModel() *model {
	return &model{held: map[string]int64{}, expiry: map[string]time.Time{}, requests: map[string][]string{},
		withdrawn: map[string][]string{}, pinned: map[string]bool{}, outcome: map[string]string{}, credits: map[string]int64{},
		doneAt: map[string]time.Time{}, grants: map[string]int64{}}
}

func (m *model) finish(id, how string, n int64, at time.Time) {
	delete(m.held, id)
	delete(m.expiry, id)
	delete(m.requests, id)
	delete(m.withdrawn, id)
	delete(m.pinned, id)
	m.outcome[id], m.credits[id], m.doneAt[id] = how, n, at
}

// reserve states Reserve: success, and the event type appended ("" none).
func (m *model) reserve(id, req string, price int64, ttl time.Duration, now time.Time) (bool, ledger.EventType) {
	if n, open := m.held[id]; open {
		switch {
		case n != price || !now.Before(m.expiry[id]) || slices.Contains(m.withdrawn[id], req):
			return false, ""
		case m.pinned[id] || slices.Contains(m.requests[id], req):
			return true, ""
		case len(m.requests[id])+len(m.withdrawn[id]) >= ledger.MaxRequests:
			m.pinned[id] = true
		default:
			m.requests[id] = append(m.requests[id], req)
		}
		return true, ledger.TypeConfirmed
	}
	if how, done := m.outcome[id]; done {
		return how == "committed" && m.credits[id] == price, ""
	}
	if m.balance < price {
		m.finish(id, "denied", price, now)
		return false, ledger.TypeDenied
	}
	m.balance -= price
	m.held[id], m.expiry[id], m.requests[id] = price, now.Add(ttl), []string{req}
	return true, ledger.TypeReserved
}

// abandon states Abandon (with a request named).
func (m *model) abandon(id, req string, now time.Time) ledger.EventType {
	if n, open := m.held[id]; open {
		held := slices.Index(m.requests[id], req)
		full := len(m.requests[id])+len(m.withdrawn[id]) >= ledger.MaxRequests
		switch {
		case m.pinned[id] || slices.Contains(m.withdrawn[id], req) || held < 0 && full:
			return ""
		case held >= 0 && len(m.requests[id]) == 1:
			m.balance += n
			m.finish(id, "abandoned", n, now)
			return ledger.TypeReleased
		case held >= 0:
			m.requests[id] = slices.Delete(m.requests[id], held, held+1)
		default:
			m.withdrawn[id] = append(m.withdrawn[id], req)
		}
		return ledger.TypeWithdrawn
	}
	if _, done := m.outcome[id]; done {
		return ""
	}
	m.finish(id, "abandoned", 0, now)
	return ledger.TypeDenied
}

// forget states Forget.
func (m *model) forget(before time.Time) {
	for id, at := range m.doneAt {
		if at.Before(before) {
			delete(m.outcome, id)
			delete(m.credits, id)
			delete(m.doneAt, id)
		}
	}
}

// entry is one step of a stored history: an appended event with its
// stream sequence, or (forget set) a Forget the replica did there.
type entry struct {
	seq    uint64
	raw    []byte
	typ    ledger.EventType
	forget time.Time
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
	m := newModel()
	h := &history{t: t, rng: rng}
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
	request := func() string { return fmt.Sprint("r", rng.Intn(4)) }
	// Each invokeId has its price; now and then a request asks another.
	prices := map[string]int64{}
	priceOf := func(id string) int64 {
		p, ok := prices[id]
		if !ok || rng.Intn(5) == 0 {
			p = int64(1 + rng.Intn(8))
		}
		if !ok {
			prices[id] = p
		}
		return p
	}

	for i := range steps {
		now = now.Add(time.Duration(rng.Intn(90)) * time.Second)
		var (
			d           ledger.Decision
			wantSuccess bool
			wantEvent   ledger.EventType
			what        string
		)
		switch op := rng.Intn(13); op {
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
				wantSuccess, wantEvent = true, ledger.TypeGranted
				m.balance += n
				if id != "" {
					m.grants[id] = n
				}
			}
		case 1, 2, 3: // reserve, sometimes a repeat by another request
			id, req := invoke(rng.Intn(4) != 0), request()
			price := priceOf(id)
			what = fmt.Sprintf("reserve %s by %s for %d", id, req, price)
			d = a.Reserve(id, req, price, ttl, now)
			wantSuccess, wantEvent = m.reserve(id, req, price, ttl, now)
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
				wantSuccess, wantEvent = true, ledger.EventType(typ)
				if typ == "released" {
					m.balance += n
				}
				m.finish(id, typ, n, now)
			case !open:
				how := m.outcome[id]
				wantSuccess = how == typ || how == "abandoned" && typ == "released"
			}
		case 10, 11: // an abandonment, naming the request whose answer was lost
			id, req := invoke(rng.Intn(2) == 0), fmt.Sprint("r", rng.Intn(4))
			what = fmt.Sprintf("abandon %s by %s", id, req)
			d = a.Abandon(id, req, now)
			wantSuccess, wantEvent = true, m.abandon(id, req, now)
		case 12: // the adapter forgets outcomes nothing can repeat any more
			cutoff := now.Add(-ledger.MinRetention - time.Duration(rng.Intn(600))*time.Second)
			a.Forget(cutoff)
			m.forget(cutoff)
			h.forgot(cutoff)
			continue
		default: // the expiry sweeper
			what = "sweep"
			for _, id := range a.Due(now) {
				d := a.Expire(id, now)
				if !d.Answer.Success || len(d.Events) != 1 {
					t.Fatalf("step %d: expire %s: %+v", i, id, d)
				}
				h.append(a, d.Events[0])
				m.balance += m.held[id]
				m.finish(id, "expired", m.held[id], now)
			}
			for id, at := range m.expiry {
				if !now.Before(at) {
					t.Fatalf("step %d: %s is due but the sweep left it", i, id)
				}
			}
			continue
		}

		if d.Answer.Success != wantSuccess {
			t.Fatalf("step %d %s: success %v, model says %v (%q)", i, what, d.Answer.Success, wantSuccess, d.Answer.ErrMessage)
		}
		switch {
		case len(d.Events) > 1:
			t.Fatalf("step %d %s: %d events", i, what, len(d.Events))
		case wantEvent == "" && len(d.Events) != 0:
			t.Fatalf("step %d %s: appended %s, model says nothing", i, what, d.Events[0].Type)
		case wantEvent != "" && (len(d.Events) != 1 || d.Events[0].Type != wantEvent):
			t.Fatalf("step %d %s: appended %+v, model says %s", i, what, d.Events, wantEvent)
		}
		for _, e := range d.Events {
			h.append(a, e)
		}
		checkAccount(t, a, fmt.Sprintf("step %d %s", i, what))
		if a.Balance != m.balance || len(a.Open) != len(m.held) {
			t.Fatalf("step %d %s: balance %d with %d open, model %d with %d", i, what, a.Balance, len(a.Open), m.balance, len(m.held))
		}
		if len(a.Finished) != len(m.outcome) {
			t.Fatalf("step %d %s: %d outcomes remembered, model %d", i, what, len(a.Finished), len(m.outcome))
		}
	}
	h.verify(a)
	h.mustCover(steps, ledger.TypeGranted, ledger.TypeReserved, ledger.TypeConfirmed, ledger.TypeWithdrawn, ledger.TypeCommitted,
		ledger.TypeReleased, ledger.TypeExpired, ledger.TypeDenied, ledger.TypeSnapshot)
}

// checkAccount checks the balance identity and that no balance is negative.
func checkAccount(t *testing.T, a *ledger.Account, where string) {
	t.Helper()
	if a.Balance < 0 {
		t.Fatalf("%s: negative balance %d", where, a.Balance)
	}
	var held int64
	for _, r := range a.Open {
		held += r.Credits
	}
	if a.Reserved != held {
		t.Fatalf("%s: reserved %d, open reservations hold %d", where, a.Reserved, held)
	}
	if a.Balance != a.Granted-a.Committed-a.Reserved {
		t.Fatalf("%s: balance %d != %d - %d - %d", where, a.Balance, a.Granted, a.Committed, a.Reserved)
	}
}

// history is a stored stream: events as JSON with their sequences, and
// the Forget calls of the replica that wrote them; now and then a snapshot
// of the account is appended, as the adapter does.
type history struct {
	t       *testing.T
	rng     *rand.Rand
	entries []entry
	seq     uint64
}

// append stores e as the stream would (JSON, a sequence with gaps: other
// subjects interleave), folds it into a, and now and then appends a
// snapshot of a after it.
func (h *history) append(a *ledger.Account, e ledger.Event) {
	h.t.Helper()
	h.store(a, e)
	if h.rng.Intn(25) == 0 {
		h.store(a, a.Snapshot(e.At))
	}
}

func (h *history) store(a *ledger.Account, e ledger.Event) {
	h.t.Helper()
	if e.Balance < 0 || e.Reserved < 0 {
		h.t.Fatalf("event with balance %d reserved %d", e.Balance, e.Reserved)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		h.t.Fatal(err)
	}
	h.seq += uint64(1 + h.rng.Intn(2))
	if err := a.Apply(e, h.seq); err != nil {
		h.t.Fatalf("apply %s %q: %v", e.Type, e.InvokeID, err)
	}
	if err := a.Check(e); err != nil {
		h.t.Fatal(err)
	}
	h.entries = append(h.entries, entry{seq: h.seq, raw: raw, typ: e.Type})
}

func (h *history) forgot(before time.Time) { h.entries = append(h.entries, entry{forget: before}) }

// verify replays the history twice — every event from the first, and from
// the last snapshot on — and requires both to reach live's state.
func (h *history) verify(live *ledger.Account) {
	h.t.Helper()
	full := ledger.NewAccount(acct)
	var fromSnap *ledger.Account
	for _, s := range h.entries {
		if !s.forget.IsZero() {
			full.Forget(s.forget)
			if fromSnap != nil {
				fromSnap.Forget(s.forget)
			}
			continue
		}
		var e ledger.Event
		if err := json.Unmarshal(s.raw, &e); err != nil {
			h.t.Fatal(err)
		}
		if err := full.Apply(e, s.seq); err != nil {
			h.t.Fatalf("replay seq %d: %v", s.seq, err)
		}
		if err := full.Check(e); err != nil {
			h.t.Fatalf("replay: %v", err)
		}
		switch {
		case e.Type == ledger.TypeSnapshot:
			a, err := ledger.FromSnapshot(e, s.seq)
			if err != nil {
				h.t.Fatal(err)
			}
			fromSnap = a
		case fromSnap != nil:
			if err := fromSnap.Apply(e, s.seq); err != nil {
				h.t.Fatalf("replay from a snapshot, seq %d: %v", s.seq, err)
			}
		}
	}
	if !reflect.DeepEqual(normalized(full), normalized(live)) {
		h.t.Fatalf("replayed state differs:\n%+v\nlive:\n%+v", full, live)
	}
	if fromSnap == nil {
		h.t.Fatal("no snapshot in the history")
	}
	if !reflect.DeepEqual(normalized(fromSnap), normalized(live)) {
		h.t.Fatalf("state loaded from the last snapshot differs:\n%+v\nlive:\n%+v", fromSnap, live)
	}
}

// normalized returns a copy of a whose empty maps are nil: a fold and a
// snapshot's JSON agree on content, not on allocation.
func normalized(a *ledger.Account) *ledger.Account {
	c := a.Clone()
	if len(c.Open) == 0 {
		c.Open = nil
	}
	if len(c.Finished) == 0 {
		c.Finished = nil
	}
	if len(c.Grants) == 0 {
		c.Grants = nil
	}
	return c
}

// mustCover fails unless every type appears at least 10 times.
func (h *history) mustCover(steps int, types ...ledger.EventType) {
	h.t.Helper()
	seen := map[ledger.EventType]int{}
	for _, s := range h.entries {
		if s.forget.IsZero() {
			seen[s.typ]++
		}
	}
	h.t.Logf("events: %v", seen)
	for _, typ := range types {
		if seen[typ] < 10 {
			h.t.Fatalf("only %d %s events in %d steps (%v): the sequence exercises too little", seen[typ], typ, steps, seen)
		}
	}
}

// TestAnsweredReservationsAreHeld interleaves what the platform, the
// ingress and the quota replicas can do to a few invokeIds: reserve
// requests (twins and repeats of one invokeId among them, at the same or
// another price), answers lost on the way with their abandonment arriving
// before or after the decision, decisions held back, commits and rollbacks
// of what the platform was told, and expiry. Whatever the order:
//
//   - every success:true answer to a reserve is backed by a held
//     reservation at that moment: open, unexpired, of the price asked (or
//     already committed at that price);
//   - a reservation the platform was told is held stays held until the
//     platform commits or rolls it back or it expires: no abandonment
//     releases it, and the platform's commit before the expiry succeeds;
//   - nothing is released twice, and the balance identity holds.
func TestAnsweredReservationsAreHeld(t *testing.T) {
	t.Parallel()
	for seed := int64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			runDeliveries(t, rand.New(rand.NewSource(seed)), 2000)
		})
	}
}

// delivery is one apiAccessPreInvoke request on its way through the
// ingress: decided or not yet, its answer delivered or lost (then it is
// abandoned, once).
type delivery struct {
	invoke, req string
	price       int64
	lost        bool
	decided     bool
	abandoned   bool
}

func runDeliveries(t *testing.T, rng *rand.Rand, steps int) {
	a := ledger.NewAccount(acct)
	h := &history{t: t, rng: rng}
	now := t0
	const ttl = 8 * time.Minute
	var (
		pending []*delivery // decisions held back, abandonments not yet arrived
		nInvoke int
		nReq    int
		// told holds, per invokeId, the price and expiry of the reservation
		// the platform was told is held, until the platform ends it.
		told    = map[string]ledger.Reservation{}
		counted = map[ledger.EventType]int{}
		lost    int
	)
	run := func(what string, d ledger.Decision) ledger.Decision {
		t.Helper()
		if len(d.Events) > 1 {
			t.Fatalf("%s: %d events", what, len(d.Events))
		}
		for _, e := range d.Events {
			if e.Type == ledger.TypeReleased && e.Reason != "" {
				if r, ok := told[e.InvokeID]; ok {
					t.Fatalf("%s released %s, which the platform was told holds %d credits until %s",
						what, e.InvokeID, r.Credits, r.ExpiresAt.Format(time.TimeOnly))
				}
			}
			counted[e.Type]++
			h.append(a, e)
		}
		checkAccount(t, a, what)
		return d
	}
	// decide decides the reserve of d and checks the answer is backed.
	decide := func(d *delivery) {
		t.Helper()
		what := fmt.Sprintf("reserve %s by %s for %d", d.invoke, d.req, d.price)
		dec := run(what, a.Reserve(d.invoke, d.req, d.price, ttl, now))
		d.decided = true
		if !dec.Answer.Success {
			return
		}
		r, open := a.Open[d.invoke]
		o, done := a.Finished[d.invoke]
		switch {
		case open && r.Credits == d.price && now.Before(r.ExpiresAt):
		case done && o.Type == ledger.TypeCommitted && o.Credits == d.price:
			return
		default:
			t.Fatalf("%s answered success, but holds %+v (open %v), finished %+v (%v)", what, r, open, o, done)
		}
		if !d.lost {
			if prev, ok := told[d.invoke]; ok && prev.Credits != r.Credits {
				t.Fatalf("%s: the platform was told %d credits are held, now %d", what, prev.Credits, r.Credits)
			}
			told[d.invoke] = r
		}
	}
	abandon := func(d *delivery) {
		t.Helper()
		d.abandoned = true
		dec := run(fmt.Sprintf("abandon %s by %s", d.invoke, d.req), a.Abandon(d.invoke, d.req, now))
		if !dec.Answer.Success {
			t.Fatalf("abandonment refused: %+v", dec.Answer)
		}
	}

	for i := range steps {
		now = now.Add(time.Duration(rng.Intn(40)) * time.Second)
		switch op := rng.Intn(12); {
		case op < 4: // a reserve request: a new invokeId, or a twin or repeat of a recent one
			if nInvoke == 0 || rng.Intn(3) == 0 {
				nInvoke++
			}
			nReq++
			d := &delivery{invoke: fmt.Sprint("i", max(1, nInvoke-rng.Intn(3))), req: fmt.Sprint("r", nReq),
				price: int64(1 + rng.Intn(2)), lost: rng.Intn(3) == 0}
			if d.lost {
				lost++
			}
			if d.lost && rng.Intn(2) == 0 {
				pending = append(pending, d) // held back in a paused replica
				continue
			}
			decide(d)
			if d.lost {
				pending = append(pending, d)
			}
		case op < 7: // something held back arrives: a late decision or an abandonment
			if len(pending) == 0 {
				continue
			}
			k := rng.Intn(len(pending))
			d := pending[k]
			if !d.decided && (d.abandoned || rng.Intn(2) == 0) {
				decide(d)
			} else if !d.abandoned {
				abandon(d)
			}
			if d.decided && d.abandoned {
				pending = append(pending[:k], pending[k+1:]...)
			}
		case op < 9: // the platform commits or rolls back what it was told is held
			for id, r := range told {
				if rng.Intn(2) == 0 {
					continue
				}
				var dec ledger.Decision
				if rng.Intn(3) == 0 {
					dec = run("rollback "+id, a.Rollback(id, now))
				} else {
					dec = run("commit "+id, a.Commit(id, now))
				}
				if now.Before(r.ExpiresAt) && !dec.Answer.Success {
					t.Fatalf("step %d: the platform was told %s holds %d credits until %s; at %s it is refused: %s",
						i, id, r.Credits, r.ExpiresAt.Format(time.TimeOnly), now.Format(time.TimeOnly), dec.Answer.ErrMessage)
				}
				delete(told, id)
				break
			}
		case op < 10: // grants keep credits coming, sometimes too few
			run("grant", a.Grant("", int64(1+rng.Intn(3)), now))
		default: // the expiry sweeper
			for _, id := range a.Due(now) {
				run("expire "+id, a.Expire(id, now))
				delete(told, id)
			}
		}
	}
	h.verify(a)
	t.Logf("events: %v; %d answers lost", counted, lost)
	for _, typ := range []ledger.EventType{ledger.TypeReserved, ledger.TypeConfirmed, ledger.TypeWithdrawn, ledger.TypeCommitted,
		ledger.TypeReleased, ledger.TypeExpired, ledger.TypeDenied} {
		if counted[typ] < 3 {
			t.Fatalf("only %d %s events in %d steps (%v): the sequence exercises too little", counted[typ], typ, steps, counted)
		}
	}
}
