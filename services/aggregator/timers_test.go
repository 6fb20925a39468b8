package aggregator_test

import (
	"context"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// TestIdleTimeoutFiresAfterRestart: a job's idle timeout expires while no
// aggregator runs; the next one to start closes it, with finished_at at the
// deadline.
func TestIdleTimeoutFiresAfterRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Jobs.IdleTimeout = 2 * time.Second
	margin := aggregator.WithTimerMargin(200 * time.Millisecond)

	r := e.start(margin)
	e.callback("default", "sdPreInvoke", "a_idle", "inv-1", nil)
	seq := e.callback("default", "sdTaskFinished", "a_idle", "inv-1", taskBody(true, "img-1"))
	kv, err := e.js.KeyValue(context.Background(), contract.BucketAggregatorState)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "the task applied", func() bool {
		v, err := kv.Get(context.Background(), "cb.default.a_idle")
		return err == nil && len(v.Value()) > 0 && e.rebuildLastSeq(v.Value()) >= seq
	})
	r.stop()
	time.Sleep(4 * time.Second) // the deadline passes while nothing runs
	if n := e.jobCount(); n != 0 {
		t.Fatalf("%d jobs before restart", n)
	}

	e.start(margin)
	e.waitJobs(15*time.Second, 1)
	got := e.jobsStored()
	if len(got) != 1 {
		t.Fatalf("%d jobs after restart, want 1", len(got))
	}
	j := got[0]
	if j.ClosedBy != jobs.ClosedByIdleTimeout || j.Status != jobs.StatusSucceeded || len(j.Tasks) != 1 {
		t.Fatalf("job %+v", j)
	}
	if d := j.FinishedAt.Sub(j.StartedAt); d < 2*time.Second || d > 3*time.Second {
		t.Fatalf("finished %s after start, want the idle timeout after the last task", d)
	}
	want := e.rebuild(time.Now())
	if d := aggregator.Compare(want.Records, got); !d.Clean() {
		t.Fatalf("differs from the rebuild: %+v", d)
	}
}
