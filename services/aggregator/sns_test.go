package aggregator_test

import (
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// TestSNSRepeatsAndReordering: repeated, late and out-of-order SNS messages
// give one job per task id, with the first terminal result.
func TestSNSRepeatsAndReordering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	done := func(id string, ok bool, img string) map[string]any {
		m := map[string]any{"id": id, "status": "failed", "result": false}
		if ok {
			m = map[string]any{"id": id, "status": "completed", "result": true, "image_url": []string{"s3://out/" + img + ".png"}}
		}
		return m
	}
	running := func(id string) map[string]any { return map[string]any{"id": id, "status": "running"} }
	for _, m := range []map[string]any{
		running("t1"), done("t1", true, "a"), done("t1", true, "a"), running("t1"), // repeat, late running
		done("t2", false, ""), done("t2", true, "b"), // the first terminal result wins
		{"id": 3, "result": true, "image_url": []string{"s3://out/c.png"}}, // legacy, numeric id
		{"id": 3, "result": true, "image_url": []string{"s3://out/c.png"}},
		running("t4"), // still running: no job
		{"id": "t5", "status": "completed", "result": true, "context": map[string]any{"job_id": "J"}},
	} {
		e.sns("eks", "_", m)
	}
	e.waitJobs(10*time.Second, 3)
	time.Sleep(500 * time.Millisecond)
	got := e.jobsStored()
	byTask := map[string]jobs.Record{}
	for _, r := range got {
		if len(r.Tasks) != 1 {
			t.Fatalf("job %s has %d tasks", r.JobID, len(r.Tasks))
		}
		byTask[r.Tasks[0].TaskID] = r
	}
	if len(got) != 3 || len(byTask) != 3 {
		t.Fatalf("%d jobs for tasks %v, want one each for t1, t2, 3", len(got), byTask)
	}
	for id, want := range map[string]jobs.Status{"t1": jobs.StatusSucceeded, "t2": jobs.StatusFailed, "3": jobs.StatusSucceeded} {
		r := byTask[id]
		if r.Status != want || r.ClosedBy != jobs.ClosedByTerminalResult {
			t.Errorf("task %s: %s by %s, want %s by terminal_result", id, r.Status, r.ClosedBy, want)
		}
	}
	if imgs := byTask["t1"].Images; len(imgs) != 1 || imgs[0].URL != "s3://out/a.png" || imgs[0].ImageID != "a" {
		t.Errorf("t1 images %+v", imgs)
	}
	want := e.rebuild(time.Now())
	if d := aggregator.Compare(want.Records, got); !d.Clean() || want.Open != 1 {
		t.Fatalf("differs from the rebuild (open %d): %+v", want.Open, d)
	}
}
