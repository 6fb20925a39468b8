package quota

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/quotarpc"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// clock is a settable clock for WithClock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// replicaWithClock is a quota replica (not running: decisions are asked of
// Decide directly) over a fresh node, on clk.
func replicaWithClock(t *testing.T, cfg Config, clk *clock) *Service {
	t.Helper()
	node := natstest.Start(t)
	_, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	s, err := New(context.Background(), cfg, js, prometheus.NewRegistry(), WithClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// held returns the accounts s holds in memory and the outcomes each
// remembers.
func (s *Service) held() map[string]int {
	s.accounts.mu.Lock()
	defer s.accounts.mu.Unlock()
	out := map[string]int{}
	for id, e := range s.accounts.m {
		if e.acct != nil {
			out[id] = len(e.acct.Finished)
		}
	}
	return out
}

// TestDecidedInvokeIDsAreForgotten: every refused reservation is remembered
// (a repeat gets the same answer and appends nothing) for
// quota.decided_retention, then forgotten: the memory a flood of distinct
// invokeIds takes is bounded by what arrives within the retention.
func TestDecidedInvokeIDsAreForgotten(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	cfg := Config{}
	s := replicaWithClock(t, cfg, clk)
	acct := account.FromToken("user-flood")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reserve := func(inv string) quotarpc.Answer {
		return s.Decide(ctx, quotarpc.DecideRequest{BizType: callback.BizAPIPreInvoke, Account: acct, InvokeID: inv,
			Body: []byte(`{"batch_size":1}`), At: clk.now(), RequestID: quotarpc.NewRequestID()})
	}
	const n = 2000
	long := strings.Repeat("x", 200)
	for i := range n {
		if a := reserve(fmt.Sprint(long, i)); a.Success {
			t.Fatalf("reserve on an empty account: %+v", a)
		}
	}
	if got := s.held()[acct]; got != n {
		t.Fatalf("%d outcomes remembered, want %d", got, n)
	}
	stream, err := s.js.Stream(ctx, contract.StreamQuota)
	if err != nil {
		t.Fatal(err)
	}
	msgs := func() uint64 {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	s.inflight.Wait() // the snapshot the first round made due, written in the background
	before := msgs()
	for i := range n {
		if a := reserve(fmt.Sprint(long, i)); a.Success || !strings.Contains(a.ErrMessage, "Not enough credits") {
			t.Fatalf("repeat %d: %+v", i, a)
		}
	}
	if after := msgs(); after != before {
		t.Fatalf("%d refused repeats appended %d events", n, after-before)
	}

	clk.advance(DefaultDecidedRetention + time.Minute)
	reserve("after-the-retention")
	if got := s.held()[acct]; got != 1 {
		t.Fatalf("%d outcomes remembered after the retention, want 1", got)
	}
}

// TestAccountsAreEvicted: a replica holds at most quota.max_accounts
// accounts, drops those idle for quota.account_idle, and loads a dropped
// account again, whole, when it is used.
func TestAccountsAreEvicted(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	cfg := Config{}
	cfg.MaxAccounts = 10
	s := replicaWithClock(t, cfg, clk)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 100 {
		id := account.FromToken(fmt.Sprint("user-", i))
		d, err := s.execute(ctx, id, grantCmd(int64(i+1)))
		if err != nil || !d.Answer.Success {
			t.Fatalf("grant %d: %v %+v", i, err, d.Answer)
		}
		if n := s.accounts.len(); n > cfg.MaxAccounts {
			t.Fatalf("%d accounts in memory after %d used, at most %d", n, i+1, cfg.MaxAccounts)
		}
	}
	if n := s.accounts.evict(clk.now()); n != 0 {
		t.Fatalf("%d accounts evicted before they were idle", n)
	}
	clk.advance(DefaultAccountIdle)
	if n := s.accounts.evict(clk.now()); n != cfg.MaxAccounts || s.accounts.len() != 0 {
		t.Fatalf("%d idle accounts evicted, %d left", n, s.accounts.len())
	}
	v, err := s.View(ctx, account.FromToken("user-41"))
	if err != nil || v.Balance != 42 || len(v.Ledger) != 1 {
		t.Fatalf("an evicted account loaded again: %+v (%v)", v, err)
	}
}

func grantCmd(n int64) command {
	return func(a *ledger.Account, now time.Time) ledger.Decision { return a.Grant("", n, now) }
}

// TestSweepExpiresOverdueAndKeepsNoAccountAlive: the sweep of overdue
// reservations expires, in the accounts a replica holds, the reservations
// more than overdueGrace past their expiry and no other, counts each in
// decisions_total{kind="sweep"}, and does not make the accounts it visits
// recently used: idle ones are still evicted.
func TestSweepExpiresOverdueAndKeepsNoAccountAlive(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	cfg := Config{ReservationTTL: time.Minute, AccountIdle: DefaultAccountIdle}
	s := replicaWithClock(t, cfg, clk)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reserve := func(id, inv string) {
		t.Helper()
		d, err := s.execute(ctx, id, func(a *ledger.Account, now time.Time) ledger.Decision {
			return a.Reserve(inv, "req-"+inv, 1, cfg.ReservationTTL, now)
		})
		if err != nil || !d.Answer.Success {
			t.Fatalf("reserve %s: %v %+v", inv, err, d.Answer)
		}
	}
	a, b := account.FromToken("user-a"), account.FromToken("user-b")
	for _, id := range []string{a, b} {
		if d, err := s.execute(ctx, id, grantCmd(5)); err != nil || !d.Answer.Success {
			t.Fatalf("grant: %v %+v", err, d.Answer)
		}
	}
	reserve(a, "early")
	reserve(b, "early")
	clk.advance(30 * time.Second)
	reserve(a, "late")
	lastUse := clk.now()
	// "early" is overdue by more than the grace, "late" not yet due.
	clk.advance(30*time.Second + overdueGrace + time.Second)

	s.sweepOverdue(clk.now())
	s.inflight.Wait()
	open := func(id string) []string {
		s.accounts.mu.Lock()
		e := s.accounts.m[id]
		s.accounts.mu.Unlock()
		e.lock <- struct{}{}
		defer func() { <-e.lock }()
		var ids []string
		for inv := range e.acct.Open {
			ids = append(ids, inv)
		}
		return ids
	}
	if got := open(a); len(got) != 1 || got[0] != "late" {
		t.Fatalf("a holds %v open, want only the reservation not yet overdue", got)
	}
	if got := open(b); len(got) != 0 {
		t.Fatalf("b holds %v open after the sweep", got)
	}
	if n := testutil.ToFloat64(s.metrics.decisions.WithLabelValues("sweep", "accepted")); n != 2 {
		t.Fatalf("%v reservations counted as expired by the sweep, want 2", n)
	}

	// Visiting them did not make them recently used.
	clk.advance(cfg.AccountIdle - clk.now().Sub(lastUse))
	if n := s.accounts.evict(clk.now()); n != 2 || s.accounts.len() != 0 {
		t.Fatalf("%d idle accounts evicted, %d left", n, s.accounts.len())
	}
}
