package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/account"
	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// TestAggregatorReplicaKilledAcrossFailover sends jobs — three
// sdTaskFinished and an sdJobFinished per account, accounts interleaved —
// through an ingress to two aggregator replicas sharing the durable
// "aggregator" consumer of INGRESS (R3). One replica is killed mid-stream
// (its connection drops, nothing acknowledged), then the node leading the
// consumer is taken down (shut down or SIGKILL) and brought back.
//
// It proves that every job is published exactly once, with all its tasks:
// one sd.job.finished record per account in JOBS, none twice, none missing,
// and every node holds the whole JOBS stream.
func TestAggregatorReplicaKilledAcrossFailover(t *testing.T) {
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			testAggregatorReplicaKilledAcrossFailover(t, f.deploy(t))
		})
	}
}

func testAggregatorReplicaKilledAcrossFailover(t *testing.T, d *deployment) {
	const (
		accounts = 60
		tasks    = 3
	)
	setAckWait(t, d, aggregator.ConsumerName, 2*time.Second)
	front := d.serveIngress(nil)
	p := newPlatform()
	a, _ := startAggregator(t, d), startAggregator(t, d)

	token := func(i int) string { return fmt.Sprintf("user-agg-%02d", i) }
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	// The platform: each account's callbacks in order, 5 accounts at a
	// time, one callback every 50 ms per account: about 3 s of traffic.
	var wg sync.WaitGroup
	errs := make(chan error, accounts)
	slots := make(chan struct{}, 5)
	wg.Go(func() {
		for i := range accounts {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				for k := range tasks {
					body := fmt.Appendf(nil, `{"success":true,"data":{"generatedImageId":"g-%d","url":"https://images.invalid/%d-%d.png","type":"png"}}`, k, i, k)
					if _, err := p.deliver(ctx, front.base, callback.BizTaskFinished, fmt.Sprintf("agg-%02d-t%d", i, k), token(i), body); err != nil {
						errs <- err
						return
					}
					select { // pacing the platform, not waiting for a result
					case <-time.After(50 * time.Millisecond):
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					}
				}
				if _, err := p.deliver(ctx, front.base, callback.BizJobFinished, fmt.Sprintf("agg-%02d", i), token(i), []byte(`{"success":true}`)); err != nil {
					errs <- err
				}
			})
		}
	})

	published := func() uint64 { return d.streamMsgs(contract.StreamJobs) }
	natstest.Eventually(t, 30*time.Second, "10 jobs published", func() bool { return published() >= 10 })
	a.kill()
	atKill := published()
	leader := d.consumerLeader(contract.StreamIngress, aggregator.ConsumerName)
	atDown := published()
	down := time.Now()
	leader.stop()
	natstest.Eventually(t, 45*time.Second, "jobs published without the consumer leader", func() bool {
		n := published()
		return n >= atKill+5 || n >= accounts
	})
	resumed := time.Since(down)
	leader.start()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	natstest.Eventually(t, 60*time.Second, fmt.Sprintf("%d jobs published", accounts), func() bool { return published() >= accounts })

	// Read JOBS once every node holds what its leader holds: the server may
	// place readAll's consumer on the restarted node while it catches up.
	d.waitReplicasConverge(contract.StreamJobs, published(), 30*time.Second)

	// Exactly one record per account, with every task.
	perAccount := map[string]int{}
	for _, m := range readAll(t, d.js, contract.StreamJobs, "") {
		var r jobs.Record
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatalf("undecodable JOBS record: %v", err)
		}
		perAccount[r.Account]++
		if len(r.Tasks) != tasks || r.ClosedBy != jobs.ClosedByJobEvent {
			t.Errorf("job %s of %s: %d tasks, closed by %s", r.JobID, r.Account, len(r.Tasks), r.ClosedBy)
		}
		if m.Headers().Get(nats.MsgIdHdr) == "" {
			t.Errorf("job %s published without a Nats-Msg-Id", r.JobID)
		}
	}
	for i := range accounts {
		if n := perAccount[account.FromToken(token(i))]; n != 1 {
			t.Errorf("account %d: %d job records, want 1", i, n)
		}
	}
	if len(perAccount) != accounts {
		t.Errorf("%d accounts in JOBS, want %d", len(perAccount), accounts)
	}
	d.waitReplicasConverge(contract.StreamJobs, uint64(accounts), 30*time.Second)
	t.Logf("%d jobs of %d tasks; one of two replicas killed after %d jobs, the consumer leader %s down after %d; 5 more jobs %s later",
		accounts, tasks, atKill, leader.name(), atDown, resumed.Round(time.Millisecond))
}

func startAggregator(t *testing.T, d *deployment) *replica {
	t.Helper()
	nc, js := d.connect()
	svc, err := aggregator.New(t.Context(), d.aggregator, js, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return startReplica(t, "aggregator", nc, svc.Run)
}
