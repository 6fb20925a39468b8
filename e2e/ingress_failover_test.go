package e2e_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// TestIngressAcrossLeaderFailover sends signed asynchronous callbacks at a
// steady rate through an ingress while the node leading INGRESS is taken
// down — shut down, or killed with SIGKILL (faults) — and later restarted. The platform's behaviour is reproduced: every non-2xx
// answer is retried with the same body and invokeId, signed afresh.
//
// It proves that every callback is eventually acknowledged, that each one is
// stored exactly once (no loss of an acknowledged event, no duplicate from a
// retry whose first attempt was stored without its ack arriving), that the
// restarted node catches up with every event, and that callbacks replayed
// after the failover — through the same ingress and through a replica started
// afterwards, whose de-duplication index is rebuilt from the cluster — are
// answered 200 and not stored again.
func TestIngressAcrossLeaderFailover(t *testing.T) {
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			testIngressAcrossLeaderFailover(t, f.deploy(t))
		})
	}
}

func testIngressAcrossLeaderFailover(t *testing.T, d *deployment) {
	const (
		total    = 2000
		interval = 5 * time.Millisecond // 200 callbacks/s for 10 s
		token    = "user-failover"
	)
	front := d.serveIngress(nil)
	p := newPlatform()
	load := newAsyncLoad(total, "fo", token)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	start := time.Now()
	wait := load.run(ctx, p, front.base, interval)
	acked, results := &load.acked, load.results

	// The fault: once the load runs, stop the INGRESS leader; restart it
	// after the cluster has served a few hundred callbacks without it.
	natstest.Eventually(t, 30*time.Second, "300 callbacks acknowledged", func() bool { return acked.Load() >= 300 })
	leader := d.streamLeader(contract.StreamIngress)
	down := time.Now()
	ackedAtDown := acked.Load()
	leader.stop()
	next := d.streamLeader(contract.StreamIngress)
	if next == leader {
		t.Fatal("the stopped node still leads INGRESS")
	}
	elected := time.Since(down)
	waitOrDiagnose(t, d, p, 45*time.Second, "200 more callbacks acknowledged without the old leader", func() bool {
		return acked.Load() >= ackedAtDown+200
	})
	restarted := time.Now()
	leader.start()
	wait()
	loadTime := time.Since(start)
	load.checkDelivered(t)

	var retried, maxAttempts int
	var worst time.Duration
	firstAfterDown := time.Duration(-1)
	for _, r := range results {
		if r.attempts > 1 {
			retried++
		}
		maxAttempts = max(maxAttempts, r.attempts)
		worst = max(worst, r.acked.Sub(r.sent))
		if r.sent.After(down) && r.acked.After(down) && (firstAfterDown < 0 || r.acked.Sub(down) < firstAfterDown) {
			firstAfterDown = r.acked.Sub(down)
		}
	}

	// Every acknowledged callback is stored exactly once, with its body.
	load.checkStoredOnce(t, d.js, "after the failover")

	// The restarted node holds every event too.
	d.waitReplicasConverge(contract.StreamIngress, total, 30*time.Second)

	// Replays of acknowledged callbacks — from before the failover, from
	// around it, and the last — through the same ingress and through a
	// replica started now, are acknowledged and change nothing.
	replays := []int{0, 1, int(ackedAtDown), int(ackedAtDown) + 1, total - 1}
	for i := range results {
		if results[i].attempts > 1 && len(replays) < 8 {
			replays = append(replays, i) // one that needed retries
		}
	}
	slices.Sort(replays)
	replays = slices.Compact(replays)
	second := d.serveIngress(nil)
	for _, base := range []string{front.base, second.base} {
		for _, i := range replays {
			a, err := p.send(ctx, base, callback.BizTaskFinished, load.invokeID(i), token, load.body(i))
			if err != nil || a.Code != 200 || !a.success() {
				t.Errorf("replay of %s: %d %s %v", load.invokeID(i), a.Code, a.Raw, err)
			}
		}
	}
	load.checkStoredOnce(t, d.js, "after the replays")
	d.waitReplicasConverge(contract.StreamIngress, total, 30*time.Second)

	t.Logf("%d callbacks in %s (%.0f/s offered); INGRESS leader %s stopped after %d acks, new leader %s in %s; first 2xx of a callback sent after the stop %s after it; node restarted %s after the stop",
		total, loadTime.Round(time.Millisecond), float64(total)/loadTime.Seconds(), leader.name(), ackedAtDown,
		next.name(), elected.Round(time.Millisecond), firstAfterDown.Round(time.Millisecond), restarted.Sub(down).Round(time.Millisecond))
	// Acknowledgements per second around the stop, for the report.
	var timeline []int
	for _, r := range results {
		if sec := int(r.acked.Sub(down).Seconds() + 2); sec >= 0 {
			for len(timeline) <= sec {
				timeline = append(timeline, 0)
			}
			timeline[sec]++
		}
	}
	t.Logf("acks per second from 2 s before the stop: %v", timeline)
	p.last.Range(func(k, v any) bool { t.Logf("last answer %v: %v", k, v); return true })
	t.Logf("%d callbacks needed retries (at most %d attempts); slowest callback acknowledged %s after its first attempt; %d replays through 2 ingress replicas stored nothing",
		retried, maxAttempts, worst.Round(time.Millisecond), 2*len(replays))
}
