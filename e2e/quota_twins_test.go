package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/quota"
	"github.com/sdevents/sdevents/services/quota/ledger"
)

// TestTwinRequestsOnACluster sends hundreds of pairs of apiAccessPreInvoke
// callbacks for one invokeId at the same moment, one to each of two ingress
// replicas in front of two quota replicas, on a three-node cluster with
// every stream at R3 — half of the pairs with the same body, half with
// different ones (1 and 5 images). On a replicated stream the second
// publish of a message id still being stored is refused with 409 (err_code
// 10158) before any other check, in INGRESS and in QUOTA: those are twins
// meeting, not failures.
//
// Every twin is answered 200: success, or a readable refusal — never 503,
// never "could not record" (nothing failed: every outcome was stored). At
// least one twin of each pair is told success, and the commit that follows,
// once every pair was answered, finds the credits held: no success:true is
// followed by "already rolled back". Every reservation ends once; the fold
// agrees with every stored event.
func TestTwinRequestsOnACluster(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	fronts := []*service{d.serveIngress(d.startQuotaWith(regs[0])), d.serveIngress(d.startQuotaWith(regs[1]))}
	p := newPlatform()
	const (
		pairs       = 300
		concurrency = 6
		token       = "user-twins"
	)
	acct := account.FromToken(token)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	natstest.Eventually(t, 20*time.Second, "a quota replica answering", func() bool {
		a, err := p.send(ctx, fronts[1].base, callback.BizSDPreInvoke, "probe", token, []byte(`{}`))
		return err == nil && a.Code == http.StatusOK && a.success()
	})
	natstest.Eventually(t, 20*time.Second, "the grant stored", func() bool {
		return grant(ctx, p, fronts[0].base, acct, 10*pairs, "twins-grant") == nil
	})

	type twin struct {
		body   string
		answer answer
		err    error
	}
	results := make([][2]twin, pairs)
	invokeID := func(i int) string { return fmt.Sprintf("twin-%03d", i) }
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	for i := range pairs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			bodies := [2]string{`{"batch_size":1}`, `{"batch_size":1}`}
			if i%2 == 1 {
				bodies[1] = `{"batch_size":5}`
			}
			start := make(chan struct{})
			var pair sync.WaitGroup
			for k := range 2 {
				pair.Go(func() {
					<-start
					a, err := p.send(ctx, fronts[k].base, callback.BizAPIPreInvoke, invokeID(i), token, []byte(bodies[k]))
					results[i][k] = twin{body: bodies[k], answer: a, err: err}
				})
			}
			close(start)
			pair.Wait()
		})
	}
	wg.Wait()

	// Every answer is 200 with success or a readable refusal.
	told := map[string]int64{} // invokeId → credits the platform was told are held
	var busy, conflicting int
	for i, pair := range results {
		for _, tw := range pair {
			a := tw.answer
			msg, _ := a.Body["errMessage"].(string)
			switch {
			case tw.err != nil:
				t.Fatalf("%s: %v", invokeID(i), tw.err)
			case a.Code != http.StatusOK:
				t.Errorf("%s (%s): answered %d %s", invokeID(i), tw.body, a.Code, a.Raw)
			case strings.Contains(msg, "could not record"):
				t.Errorf("%s (%s): %q, but nothing failed", invokeID(i), tw.body, msg)
			case a.success():
				credits := int64(1)
				if tw.body == `{"batch_size":5}` {
					credits = 5
				}
				if prev, ok := told[invokeID(i)]; ok && prev != credits {
					t.Errorf("%s: both twins told success, for %d and %d credits", invokeID(i), prev, credits)
				}
				told[invokeID(i)] = credits
			case strings.Contains(msg, "busy"):
				busy++ // the machine was too slow to answer in time: not a twin's doing
			case strings.Contains(msg, "already holds"):
				conflicting++
			default:
				t.Errorf("%s (%s): refused with %q", invokeID(i), tw.body, msg)
			}
		}
		if _, ok := told[invokeID(i)]; !ok && busy == 0 {
			t.Errorf("%s: neither twin told success: %s / %s", invokeID(i), pair[0].answer.Raw, pair[1].answer.Raw)
		}
	}

	// The platform commits what it was told is held, after every pair was
	// answered (and every abandonment a failure would have started was
	// through): each commit finds its credits.
	var committed int64
	for inv, credits := range told {
		a, err := p.send(ctx, fronts[len(inv)%2].base, callback.BizAPICommit, inv, token, nil)
		if err != nil || a.Code != http.StatusOK || !a.success() {
			t.Errorf("commit of %s, told %d credits are held: %v %s", inv, credits, err, a.Raw)
			continue
		}
		committed += credits
	}

	// The ledger: one decision per invokeId, no release, every commit once.
	reserved, ended := map[string]int{}, map[string]int{}
	var duplicates float64
	for _, m := range readAll(t, d.js, contract.StreamQuota, "sd.quota."+acct) {
		var e ledger.Event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatalf("undecodable QUOTA event: %v", err)
		}
		switch e.Type {
		case ledger.TypeReserved, ledger.TypeDenied:
			reserved[e.InvokeID]++
		case ledger.TypeCommitted, ledger.TypeReleased, ledger.TypeExpired:
			ended[e.InvokeID]++
			if e.Type == ledger.TypeReleased && told[e.InvokeID] > 0 {
				t.Errorf("%s released (%q), but the platform was told it is held", e.InvokeID, e.Reason)
			}
		}
	}
	for inv, n := range reserved {
		if n != 1 || ended[inv] > 1 {
			t.Errorf("%s decided %d times, ended %d times", inv, n, ended[inv])
		}
	}
	rep, err := quota.Replay(ctx, d.js, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differ) > 0 {
		t.Errorf("the fold disagrees with the stored events: %+v", rep.Differ)
	}
	if b := rep.Balances[acct]; b.Committed != committed || b.Balance+b.Reserved+b.Committed != 10*pairs {
		t.Errorf("fold: balance %d reserved %d committed %d; the platform committed %d", b.Balance, b.Reserved, b.Committed, committed)
	}
	for _, reg := range regs {
		duplicates += counter(t, reg, "sdevents_quota_append_duplicates_total")
	}
	t.Logf("%d pairs: %d invokeIds told success, %d twins refused as another request, %d busy; %.0f appends met a twin's message id",
		pairs, len(told), conflicting, busy, duplicates)
}

// startQuotaWith runs a quota replica, its metrics in reg, until the test
// ends.
func (d *deployment) startQuotaWith(reg *prometheus.Registry) *quota.Service {
	d.t.Helper()
	nc, js := d.connect()
	svc, err := quota.New(d.t.Context(), d.quota, js, reg)
	if err != nil {
		d.t.Fatal(err)
	}
	startReplica(d.t, "quota", nc, svc.Run)
	return svc
}

// counter is the sum of the counter family name in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
