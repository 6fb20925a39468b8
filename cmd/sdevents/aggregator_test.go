package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/natsauth"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// TestAggregatorTargetAndReplayJobs: `sdevents run` includes the aggregator,
// which closes a job, and `sdevents replay jobs` agrees with JOBS — and
// reports a record that INGRESS does not explain.
func TestAggregatorTargetAndReplayJobs(t *testing.T) {
	t.Parallel()
	if _, ok := findTarget("aggregator"); !ok || !slices.Contains(runAll(), "aggregator") {
		t.Fatal("aggregator is not a run target")
	}
	cfg := exampleConfig(t, t.TempDir())
	r := startRun(t, cfg)
	_, js := r.connect(t, natsauth.Admin)
	ctx := context.Background()
	for i, biz := range []string{"sdPreInvoke", "sdTaskFinished", "sdJobFinished"} {
		body := []byte(`{"success":true,"data":{"generatedImageId":"g-1","url":"http://127.0.0.1:9/a.png"}}`)
		msg := event.Message("sd.callback.default."+biz, event.Meta{
			ID: "cli-" + biz, Source: "/sdevents/callbacks/default", Type: "sd.callback." + biz, Time: time.Now(), Subject: "a_cli",
		}, body)
		for k, v := range map[string]string{event.HeaderSDSource: "default", event.HeaderSDAccount: "a_cli",
			event.HeaderBizType: biz, event.HeaderInvokeID: "inv-" + string(rune('1'+i))} {
			event.Set(msg, k, v)
		}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 10*time.Second, "a job in JOBS", func() bool {
		s, err := js.Stream(ctx, contract.StreamJobs)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 1
	})

	env := r.natsEnv(natsauth.Admin)
	out, _, err := sdevents(t, env, "replay", "jobs")
	if err != nil || !strings.Contains(out, "1 agree, 0 missing from JOBS, 0 extra in JOBS, 0 different") {
		t.Fatalf("replay jobs (%v):\n%s", err, out)
	}

	forged := event.Message("sd.job.finished.a_cli", event.Meta{ID: "j_forged", Source: "/test", Type: "sd.job.finished", Time: time.Now()},
		[]byte(`{"job_id":"j_forged","account":"a_cli","source":"default","status":"failed","tasks":[],"images":[]}`))
	if _, err := js.PublishMsg(ctx, forged, jetstream.WithExpectStream(contract.StreamJobs)); err != nil {
		t.Fatal(err)
	}
	out, _, err = sdevents(t, env, "replay", "jobs")
	if err == nil || !strings.Contains(out, "extra: j_forged") {
		t.Fatalf("replay jobs with a forged record (%v):\n%s", err, out)
	}
}
