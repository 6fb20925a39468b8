package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// TestQuotaAcrossLeaderFailover grants an account N credits and floods it
// with more than N concurrent apiAccessPreInvoke callbacks, through two
// ingress replicas in front of two quota replicas, while the node leading
// QUOTA is taken down — shut down or killed with SIGKILL — and later restarted.
//
// It proves that the account is never overdrawn across the failover: at most
// N reservations are answered success; every success is stored; no
// invokeId is decided twice (one reserved or denied event at most); the fold
// of the QUOTA stream agrees with the balance stored in every event, with
// both replicas' views and with the grant (balance + reserved = N, never
// negative); every reservation whose answer was lost is abandoned (released);
// the service resumes deciding after the failover; and the restarted node
// holds the whole ledger.
func TestQuotaAcrossLeaderFailover(t *testing.T) {
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			testQuotaAcrossLeaderFailover(t, f.deploy(t))
		})
	}
}

func testQuotaAcrossLeaderFailover(t *testing.T, d *deployment) {
	const (
		credits  = 60
		requests = 480
		burst    = 2 // concurrent reservations every tick: 20/s for 24 s, past a SIGKILL's election
		every    = 100 * time.Millisecond
		token    = "user-quota-failover"
	)
	q1, q2 := d.startQuota(), d.startQuota()
	fronts := []*service{d.serveIngress(q1), d.serveIngress(q2)}
	p := newPlatform()
	acct := account.FromToken(token)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	natstest.Eventually(t, 20*time.Second, "a quota replica answering", func() bool {
		a, err := p.send(ctx, fronts[1].base, callback.BizSDPreInvoke, "probe", token, []byte(`{}`))
		return err == nil && a.Code == http.StatusOK && a.success()
	})
	natstest.Eventually(t, 20*time.Second, "the grant stored", func() bool {
		return grant(ctx, p, fronts[0].base, acct, credits, "e2e-grant") == nil
	})

	type outcome struct {
		code    int
		success bool
		errMsg  string
		err     error
		sent    time.Time
	}
	results := make([]outcome, requests)
	invokeID := func(i int) string { return fmt.Sprintf("r-%03d", i) }
	var successes atomic.Int64
	var lastSuccess atomic.Int64 // unix nanos of the latest success's first send
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		for b := 0; b*burst < requests; b++ {
			select {
			case <-time.After(time.Until(start.Add(time.Duration(b) * every))):
			case <-ctx.Done():
				return
			}
			for k := range burst {
				i := b*burst + k
				wg.Go(func() {
					sent := time.Now()
					a, err := p.send(ctx, fronts[i%2].base, callback.BizAPIPreInvoke, invokeID(i), token, []byte(`{"batch_size":1,"n_iter":1}`))
					errMsg, _ := a.Body["errMessage"].(string)
					results[i] = outcome{code: a.Code, success: err == nil && a.Code == 200 && a.success(), errMsg: errMsg, err: err, sent: sent}
					if results[i].success {
						successes.Add(1)
						for {
							old := lastSuccess.Load()
							if sent.UnixNano() <= old || lastSuccess.CompareAndSwap(old, sent.UnixNano()) {
								break
							}
						}
					}
				})
			}
		}
	})

	natstest.Eventually(t, 20*time.Second, "15 reservations", func() bool { return successes.Load() >= 15 })
	leader := d.streamLeader(contract.StreamQuota)
	down := time.Now()
	atDown := successes.Load()
	leader.stop()
	next := d.streamLeader(contract.StreamQuota)
	elected := time.Since(down)
	natstest.Eventually(t, 30*time.Second, "a reservation sent after the stop answered success", func() bool {
		return lastSuccess.Load() > down.UnixNano()
	})
	resumed := time.Unix(0, lastSuccess.Load()).Sub(down)
	leader.start()
	wg.Wait()

	// Answers: 200 with success true or a readable refusal; 503 only when
	// the callback could not be stored in INGRESS.
	var denied, busy, refused, unavailable int
	ok := map[string]bool{}
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("%s: %v", invokeID(i), r.err)
		case r.success:
			ok[invokeID(i)] = true
		case r.code == http.StatusServiceUnavailable:
			unavailable++
		case r.code != http.StatusOK:
			t.Errorf("%s: answer %d %q", invokeID(i), r.code, r.errMsg)
		case strings.HasPrefix(r.errMsg, "Not enough credits"):
			denied++
		case strings.Contains(r.errMsg, "busy"):
			busy++
		default:
			refused++
		}
	}
	if len(ok) > credits {
		t.Errorf("%d reservations succeeded with %d credits: overdraft", len(ok), credits)
	}

	// The ledger: one decision per invokeId, every success stored, and —
	// once the abandonments are through — nothing held by a reservation
	// whose answer was lost.
	var evs []ledger.Event
	natstest.Eventually(t, 60*time.Second, "every reservation with a lost answer released", func() bool {
		evs = evs[:0]
		for _, m := range readAll(t, d.js, contract.StreamQuota, "sd.quota."+acct) {
			var e ledger.Event
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				t.Fatalf("undecodable QUOTA event: %v", err)
			}
			evs = append(evs, e)
		}
		held := map[string]bool{}
		for _, e := range evs {
			switch {
			case e.Type == ledger.TypeReserved && !ok[e.InvokeID]:
				held[e.InvokeID] = true
			case e.Type == ledger.TypeReleased:
				delete(held, e.InvokeID)
			}
		}
		return len(held) == 0
	})
	decided := map[string]int{}
	var reserved, abandoned, grants int
	for _, e := range evs {
		switch e.Type {
		case ledger.TypeGranted:
			grants++
		case ledger.TypeReserved:
			reserved++
			decided[e.InvokeID]++
		case ledger.TypeDenied:
			decided[e.InvokeID]++
		case ledger.TypeReleased:
			// Only an abandonment releases here: the answer of that
			// reservation was lost, so the platform was never told yes.
			abandoned++
			if e.Reason == "" || ok[e.InvokeID] {
				t.Errorf("%s released (reason %q) though answered success: %v", e.InvokeID, e.Reason, ok[e.InvokeID])
			}
		default:
			t.Errorf("unexpected %s event for %s", e.Type, e.InvokeID)
		}
		if e.Balance < 0 {
			t.Errorf("stored balance %d < 0 after %s of %s", e.Balance, e.Type, e.InvokeID)
		}
	}
	for id, n := range decided {
		if n > 1 {
			t.Errorf("%s decided %d times", id, n)
		}
	}
	for id := range ok {
		if decided[id] != 1 {
			t.Errorf("%s answered success but not stored", id)
		}
	}
	if grants != 1 {
		t.Errorf("%d granted events, want 1 (the grant carries an id)", grants)
	}

	// The fold agrees with every stored event, with the grant and with what
	// both replicas report.
	rep, err := quota.Replay(ctx, d.js, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differ) > 0 {
		t.Errorf("the fold disagrees with the stored events: %+v", rep.Differ)
	}
	fold := rep.Balances[acct]
	last := evs[len(evs)-1]
	if fold.Balance < 0 || fold.Balance != last.Balance || fold.Reserved != last.Reserved ||
		fold.Balance+fold.Reserved != credits || fold.Reserved != int64(reserved-abandoned) {
		t.Errorf("fold balance %d reserved %d, last event balance %d reserved %d, %d reserved and %d abandoned events, %d credits granted",
			fold.Balance, fold.Reserved, last.Balance, last.Reserved, reserved, abandoned, credits)
	}
	for i, f := range fronts {
		v, err := view(ctx, p, f.base, acct)
		if err != nil {
			t.Fatalf("replica %d: %v", i+1, err)
		}
		if v.Balance != fold.Balance || v.Reserved != fold.Reserved {
			t.Errorf("replica %d reports balance %d reserved %d, the fold %d and %d", i+1, v.Balance, v.Reserved, fold.Balance, fold.Reserved)
		}
	}
	d.waitReplicasConverge(contract.StreamQuota, uint64(len(evs)), 30*time.Second)

	t.Logf("%d credits, %d reservations asked (%d concurrent every %s): %d succeeded (%d before the stop), %d denied for credits, %d refused as busy (no decision within the ingress deadline), %d refused otherwise (not recorded), %d answered 503; %d reserved events, %d of them released as abandoned (stored, but their answer lost); final balance %d",
		credits, requests, burst, every, len(ok), atDown, denied, busy, refused, unavailable, reserved, abandoned, fold.Balance)
	t.Logf("QUOTA leader %s stopped, new leader %s in %s; a reservation sent %s after the stop succeeded",
		leader.name(), next.name(), elected.Round(time.Millisecond), resumed.Round(time.Millisecond))
}

// grant adds credits to acct through the operator API at base, once per id.
func grant(ctx context.Context, p *platform, base, acct string, credits int64, id string) error {
	body := fmt.Sprintf(`{"credits": %d, "id": %q}`, credits, id)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/admin/accounts/"+url.PathEscape(acct)+"/credits", bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	a, err := p.do(req)
	if err != nil {
		return err
	}
	if a.Code != http.StatusOK {
		return fmt.Errorf("grant: %d %s", a.Code, a.Raw)
	}
	return nil
}

// view reads acct through the operator API at base.
func view(ctx context.Context, p *platform, base, acct string) (quota.AccountView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/admin/accounts/"+url.PathEscape(acct), nil)
	if err != nil {
		return quota.AccountView{}, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := p.client.Do(req)
	if err != nil {
		return quota.AccountView{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v quota.AccountView
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("view %s: %d %s", acct, resp.StatusCode, raw)
	}
	return v, json.Unmarshal(raw, &v)
}
