package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/streams"
)

// TestIngressAcrossLeaderFailover sends signed asynchronous callbacks at a
// steady rate through an ingress while the node leading INGRESS is shut down
// and later restarted. The platform's behaviour is reproduced: every non-2xx
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
	t.Parallel()
	const (
		total    = 2000
		interval = 5 * time.Millisecond // 200 callbacks/s for 10 s
		token    = "user-failover"
	)
	d := newDeployment(t)
	front := d.serveIngress(nil)
	p := newPlatform()
	body := func(i int) []byte {
		return fmt.Appendf(nil, `{"success":true,"data":{"generatedImageId":"g-%d","url":"https://images.invalid/%d.png","type":"png"}}`, i, i)
	}
	invokeID := func(i int) string { return fmt.Sprintf("fo-%04d", i) }

	type outcome struct {
		attempts int
		err      error
		sent     time.Time // first attempt
		acked    time.Time // the 2xx
	}
	results := make([]outcome, total)
	var acked atomic.Int64
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		// A fixed schedule: a sender that falls behind catches up, so the
		// offered rate stays 1/interval on average on a busy machine.
		for i := range total {
			select {
			case <-time.After(time.Until(start.Add(time.Duration(i) * interval))):
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				sent := time.Now()
				n, err := p.deliver(ctx, front.base, callback.BizTaskFinished, invokeID(i), token, body(i))
				results[i] = outcome{attempts: n, err: err, sent: sent, acked: time.Now()}
				if err == nil {
					acked.Add(1)
				}
			})
		}
	})

	// The fault: once the load runs, stop the INGRESS leader; restart it
	// after the cluster has served a few hundred callbacks without it.
	natstest.Eventually(t, 30*time.Second, "300 callbacks acknowledged", func() bool { return acked.Load() >= 300 })
	leader := d.cluster.StreamLeader(t, streams.Ingress)
	down := time.Now()
	ackedAtDown := acked.Load()
	leader.Shutdown()
	next := d.cluster.StreamLeader(t, streams.Ingress)
	if next == leader {
		t.Fatal("the stopped node still leads INGRESS")
	}
	elected := time.Since(down)
	waitOrDiagnose(t, d, p, 30*time.Second, "200 more callbacks acknowledged without the old leader", func() bool {
		return acked.Load() >= ackedAtDown+200
	})
	restarted := time.Now()
	leader.Restart()
	wg.Wait()
	loadTime := time.Since(start)

	// Every callback was acknowledged, by a 200 with success: true.
	var retried, maxAttempts int
	var worst time.Duration
	firstAfterDown := time.Duration(-1)
	for i, r := range results {
		if r.err != nil {
			t.Errorf("callback %d: %v", i, r.err)
			continue
		}
		if r.attempts > 1 {
			retried++
		}
		maxAttempts = max(maxAttempts, r.attempts)
		worst = max(worst, r.acked.Sub(r.sent))
		if r.sent.After(down) && r.acked.After(down) && (firstAfterDown < 0 || r.acked.Sub(down) < firstAfterDown) {
			firstAfterDown = r.acked.Sub(down)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every acknowledged callback is stored exactly once, with its body.
	checkStoredOnce := func(when string) {
		t.Helper()
		msgs := readAll(t, d.js, streams.Ingress, "sd.callback.default.>")
		seen := map[string]int{}
		for _, m := range msgs {
			id := m.Headers().Get(event.HeaderInvokeID)
			seen[id]++
			var i int
			if _, err := fmt.Sscanf(id, "fo-%d", &i); err != nil || i < 0 || i >= total {
				t.Errorf("%s: unexpected message for invokeId %q", when, id)
				continue
			}
			if !bytes.Equal(m.Data(), body(i)) {
				t.Errorf("%s: %s stored with body %q", when, id, m.Data())
			}
		}
		for i := range total {
			if n := seen[invokeID(i)]; n != 1 {
				t.Errorf("%s: %s stored %d times, want once", when, invokeID(i), n)
			}
		}
		if len(msgs) != total {
			t.Errorf("%s: INGRESS holds %d callbacks, want %d", when, len(msgs), total)
		}
	}
	checkStoredOnce("after the failover")

	// The restarted node holds every event too.
	d.waitReplicasConverge(streams.Ingress, total, 30*time.Second)

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
			a, err := p.send(ctx, base, callback.BizTaskFinished, invokeID(i), token, body(i))
			if err != nil || a.Code != 200 || !a.success() {
				t.Errorf("replay of %s: %d %s %v", invokeID(i), a.Code, a.Raw, err)
			}
		}
	}
	checkStoredOnce("after the replays")
	d.waitReplicasConverge(streams.Ingress, total, 30*time.Second)

	t.Logf("%d callbacks in %s (%.0f/s offered); INGRESS leader %s stopped after %d acks, new leader %s in %s; first 2xx of a callback sent after the stop %s after it; node restarted %s after the stop",
		total, loadTime.Round(time.Millisecond), float64(total)/loadTime.Seconds(), leader.Srv.Name(), ackedAtDown,
		next.Srv.Name(), elected.Round(time.Millisecond), firstAfterDown.Round(time.Millisecond), restarted.Sub(down).Round(time.Millisecond))
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
