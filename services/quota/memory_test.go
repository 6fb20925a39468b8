package quota

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/config"
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
func replicaWithClock(t *testing.T, cfg config.Config, clk *clock) *Service {
	t.Helper()
	node := natstest.Start(t)
	nc, js := natstest.Connect(t, node.URL())
	natstest.ApplyStreams(t, js, 1)
	s, err := New(context.Background(), cfg, nc, prometheus.NewRegistry(), WithClock(clk.now))
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
	cfg := config.Default()
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
	before := msgs()
	for i := range n {
		if a := reserve(fmt.Sprint(long, i)); a.Success || !strings.Contains(a.ErrMessage, "Not enough credits") {
			t.Fatalf("repeat %d: %+v", i, a)
		}
	}
	if after := msgs(); after != before {
		t.Fatalf("%d refused repeats appended %d events", n, after-before)
	}

	clk.advance(cfg.Quota.DecidedRetention.D() + time.Minute)
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
	cfg := config.Default()
	cfg.Quota.MaxAccounts = 10
	s := replicaWithClock(t, cfg, clk)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 100 {
		id := account.FromToken(fmt.Sprint("user-", i))
		d, err := s.execute(ctx, id, grantCmd(int64(i+1)))
		if err != nil || !d.Answer.Success {
			t.Fatalf("grant %d: %v %+v", i, err, d.Answer)
		}
		if n := s.accounts.len(); n > cfg.Quota.MaxAccounts {
			t.Fatalf("%d accounts in memory after %d used, at most %d", n, i+1, cfg.Quota.MaxAccounts)
		}
	}
	if n := s.accounts.evict(clk.now()); n != 0 {
		t.Fatalf("%d accounts evicted before they were idle", n)
	}
	clk.advance(cfg.Quota.AccountIdle.D())
	if n := s.accounts.evict(clk.now()); n != cfg.Quota.MaxAccounts || s.accounts.len() != 0 {
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
