package jobs_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

const m = time.Minute

func TestGrouping(t *testing.T) {
	t.Parallel()
	byInvoke := jobs.Config{Key: jobs.KeyInvokeID}
	cases := []struct {
		name string
		cfg  jobs.Config
		evs  []event
		want []string
	}{
		{
			name: "one job from pre-invoke to job event",
			evs: obs(
				pre(1, 0, "a", "i1"),
				task(2, 1*m, "a", "i2", true, "x1"),
				task(3, 2*m, "a", "i3", true, "x2"),
				jobEv(4, 3*m, "a", "i4", true, "final"),
			),
			want: []string{"a succeeded job_event tasks=[2+(x1) 3+(x2)] images=[final] 0s..3m0s"},
		},
		{
			name: "a task opens the job",
			evs: obs(
				task(7, 0, "a", "i1", true, "x1"),
				jobEv(8, 1*m, "a", "i1", true, "x1"),
			),
			want: []string{"a succeeded job_event tasks=[7+(x1)] images=[x1] 0s..1m0s"},
		},
		{
			name: "interleaved accounts",
			evs: obs(
				pre(1, 0, "a", "ia"),
				pre(2, 0, "b", "ib"),
				task(3, 1*m, "b", "ib1", false),
				task(4, 1*m, "a", "ia1", true, "a1"),
				task(5, 2*m, "b", "ib2", true, "b2"),
				jobEv(6, 3*m, "a", "ia", true, "af"),
				task(7, 3*m, "b", "ib3", true, "b3"),
				jobEv(8, 4*m, "b", "ib", true, "bf"),
			),
			want: []string{
				"a succeeded job_event tasks=[4+(a1)] images=[af] 0s..3m0s",
				"b partial job_event tasks=[3- 5+(b2) 7+(b3)] images=[bf] 0s..4m0s",
			},
		},
		{
			name: "second pre-invoke joins the open job",
			evs: obs(
				pre(1, 0, "a", "i1"),
				pre(2, 1*m, "a", "i2"),
				task(3, 2*m, "a", "i2", false),
				jobEv(4, 3*m, "a", "i2", false),
			),
			want: []string{"a failed job_event tasks=[3-] images=[] 0s..3m0s"},
		},
		{
			name: "job event before its last task: the late task opens a new job",
			evs: []event{
				ob(task(1, 0, "a", "i1", true, "x1")),
				ob(jobEv(2, 1*m, "a", "i1", true, "final")),
				ob(task(3, 2*m, "a", "i2", true, "x2")),
				tick(12 * m),
			},
			want: []string{
				"a succeeded job_event tasks=[1+(x1)] images=[final] 0s..1m0s",
				"a succeeded idle_timeout tasks=[3+(x2)] images=[x2] 2m0s..12m0s",
			},
		},
		{
			name: "empty job: job event alone, succeeded",
			evs:  obs(jobEv(5, 0, "a", "i1", true, "final")),
			want: []string{"a succeeded job_event tasks=[] images=[final] 0s..0s"},
		},
		{
			name: "empty job: job event alone, failed",
			evs:  obs(jobEv(5, 0, "a", "i1", false)),
			want: []string{"a failed job_event tasks=[] images=[] 0s..0s"},
		},
		{
			name: "empty job: pre-invoke then job event",
			evs: obs(
				pre(1, 0, "a", "i1"),
				jobEv(2, 30*time.Second, "a", "i1", true, "final"),
			),
			want: []string{"a succeeded job_event tasks=[] images=[final] 0s..30s"},
		},
		{
			name: "empty job: pre-invoke alone times out as failed",
			evs: []event{
				ob(pre(1, 0, "a", "i1")),
				tick(10 * m),
			},
			want: []string{"a failed idle_timeout tasks=[] images=[] 0s..10m0s"},
		},
		{
			name: "idle timeout: tick before the deadline closes nothing",
			evs: []event{
				ob(task(1, 0, "a", "i1", true, "x1")),
				ob(task(2, 1*m, "a", "i2", false)),
				tick(10*m + 59*time.Second),
				tick(11 * m),
			},
			want: []string{"a partial idle_timeout tasks=[1+(x1) 2-] images=[x1] 0s..11m0s"},
		},
		{
			name: "idle timeout: activity moves the deadline",
			evs: []event{
				ob(pre(1, 0, "a", "i1")),
				ob(task(2, 8*m, "a", "i1", true)),
				tick(12 * m),
				ob(task(3, 17*m, "a", "i1", true)),
				tick(26 * m),
				tick(27 * m),
			},
			want: []string{"a succeeded idle_timeout tasks=[2+ 3+] images=[] 0s..27m0s"},
		},
		{
			name: "idle timeout: noticed by the next observation, at the deadline",
			evs: []event{
				ob(task(1, 0, "a", "i1", true)),
				ob(task(2, 10*m, "a", "i2", true)), // exactly at the deadline: a new job
				ob(jobEv(3, 11*m, "a", "i2", true, "f")),
			},
			want: []string{
				"a succeeded idle_timeout tasks=[1+] images=[] 0s..10m0s",
				"a succeeded job_event tasks=[2+] images=[f] 10m0s..11m0s",
			},
		},
		{
			name: "idle timeout: a job event after the timeout is an empty job",
			evs: obs(
				task(1, 0, "a", "i1", true),
				jobEv(2, 15*m, "a", "i1", true, "f"),
			),
			want: []string{
				"a succeeded idle_timeout tasks=[1+] images=[] 0s..10m0s",
				"a succeeded job_event tasks=[] images=[f] 15m0s..15m0s",
			},
		},
		{
			name: "idle timeout: configurable",
			cfg:  jobs.Config{IdleTimeout: 30 * time.Second},
			evs: []event{
				ob(task(1, 0, "a", "i1", true)),
				tick(30 * time.Second),
			},
			want: []string{"a succeeded idle_timeout tasks=[1+] images=[] 0s..30s"},
		},
		{
			name: "invoke_id keying: interleaved invokes of one account",
			cfg:  byInvoke,
			evs: obs(
				pre(1, 0, "a", "X"),
				pre(2, 0, "a", "Y"),
				task(3, 1*m, "a", "X", true, "x1"),
				task(4, 1*m, "a", "Y", false),
				jobEv(5, 2*m, "a", "Y", false),
				task(6, 2*m, "a", "X", true, "x2"),
				jobEv(7, 3*m, "a", "X", true, "xf"),
			),
			want: []string{
				"a failed job_event tasks=[4-] images=[] 0s..2m0s",
				"a succeeded job_event tasks=[3+(x1) 6+(x2)] images=[xf] 0s..3m0s",
			},
		},
		{
			name: "invoke_id keying: the same invokeId of two accounts is two jobs",
			cfg:  byInvoke,
			evs: obs(
				task(1, 0, "a", "X", true),
				task(2, 0, "b", "X", false),
				jobEv(3, 1*m, "b", "X", false),
				jobEv(4, 1*m, "a", "X", true),
			),
			want: []string{
				"b failed job_event tasks=[2-] images=[] 0s..1m0s",
				"a succeeded job_event tasks=[1+] images=[] 0s..1m0s",
			},
		},
		{
			name: "invoke_id keying: account keying would merge them",
			evs: obs(
				task(1, 0, "a", "X", true),
				task(2, 0, "a", "Y", false),
				jobEv(3, 1*m, "a", "Y", false),
				jobEv(4, 1*m, "a", "X", true),
			),
			want: []string{
				"a partial job_event tasks=[1+ 2-] images=[] 0s..1m0s",
				"a succeeded job_event tasks=[] images=[] 1m0s..1m0s",
			},
		},
		{
			name: "sns: one task, one job",
			evs:  obs(sns(1, 0, "_", "t1", jobs.TaskCompleted, true, "", "t1-1", "t1-2")),
			want: []string{"_ succeeded terminal_result tasks=[t1+(t1-1,t1-2)] images=[t1-1 t1-2] 0s..0s"},
		},
		{
			name: "sns: running opens nothing, the outcome does",
			evs: obs(
				sns(1, 0, "_", "t1", jobs.TaskRunning, false, ""),
				sns(2, 1*m, "_", "t1", jobs.TaskCompleted, true, "", "t1-1"),
			),
			want: []string{"_ succeeded terminal_result tasks=[t1+(t1-1)] images=[t1-1] 1m0s..1m0s"},
		},
		{
			name: "sns: running after completed is ignored",
			evs: []event{
				ob(sns(1, 0, "_", "t1", jobs.TaskCompleted, true, "", "t1-1")),
				ob(sns(2, 1*m, "_", "t1", jobs.TaskRunning, false, "")),
				tick(time.Hour),
			},
			want: []string{"_ succeeded terminal_result tasks=[t1+(t1-1)] images=[t1-1] 0s..0s"},
		},
		{
			name: "sns: completed twice is one job",
			evs: obs(
				sns(1, 0, "_", "t1", jobs.TaskCompleted, true, "", "t1-1"),
				sns(2, 1*m, "_", "t1", jobs.TaskCompleted, true, "", "t1-1"),
			),
			want: []string{"_ succeeded terminal_result tasks=[t1+(t1-1)] images=[t1-1] 0s..0s"},
		},
		{
			name: "sns: failed then completed, the first terminal wins",
			evs: obs(
				sns(1, 0, "_", "t1", jobs.TaskFailed, false, ""),
				sns(2, 1*m, "_", "t1", jobs.TaskCompleted, true, "", "t1-1"),
			),
			want: []string{"_ failed terminal_result tasks=[t1-] images=[] 0s..0s"},
		},
		{
			name: "sns: legacy messages without status are terminal",
			evs: obs(
				sns(1, 0, "_", "t1", jobs.TaskLegacy, true, "", "t1-1"),
				sns(2, 0, "_", "t2", jobs.TaskLegacy, false, ""),
			),
			want: []string{
				"_ succeeded terminal_result tasks=[t1+(t1-1)] images=[t1-1] 0s..0s",
				"_ failed terminal_result tasks=[t2-] images=[] 0s..0s",
			},
		},
		{
			name: "sns: completed with result false, failed with result true",
			evs: obs(
				sns(1, 0, "_", "t1", jobs.TaskCompleted, false, ""),
				sns(2, 0, "_", "t2", jobs.TaskFailed, true, ""),
			),
			want: []string{
				"_ failed terminal_result tasks=[t1-] images=[] 0s..0s",
				"_ failed terminal_result tasks=[t2-] images=[] 0s..0s",
			},
		},
		{
			name: "sns: accounts are separate",
			evs: obs(
				sns(1, 0, "a", "t1", jobs.TaskCompleted, true, ""),
				sns(2, 0, "b", "t1", jobs.TaskCompleted, false, ""),
			),
			want: []string{
				"a succeeded terminal_result tasks=[t1+] images=[] 0s..0s",
				"b failed terminal_result tasks=[t1-] images=[] 0s..0s",
			},
		},
		{
			name: "sns: context.job_id groups tasks until idle timeout",
			evs: []event{
				ob(sns(1, 0, "a", "t1", jobs.TaskRunning, false, "J")),
				ob(sns(2, 1*m, "a", "t2", jobs.TaskCompleted, true, "J", "t2-1")),
				ob(sns(3, 2*m, "a", "t1", jobs.TaskCompleted, true, "J", "t1-1")),
				ob(sns(4, 3*m, "a", "t3", jobs.TaskFailed, false, "J")),
				ob(sns(5, 4*m, "a", "t3", jobs.TaskCompleted, true, "J", "late")),
				ob(sns(6, 5*m, "a", "t2", jobs.TaskRunning, false, "J")),
				tick(13 * m), // t3's failure at 3m set the deadline; repeats do not move it
			},
			want: []string{"a partial idle_timeout tasks=[t1+(t1-1) t2+(t2-1) t3-] images=[t1-1 t2-1] 0s..13m0s"},
		},
		{
			name: "sns: a grouped task still running at the timeout failed",
			evs: []event{
				ob(sns(1, 0, "a", "t1", jobs.TaskCompleted, true, "J")),
				ob(sns(2, 1*m, "a", "t2", jobs.TaskRunning, false, "J")),
				ob(sns(3, 5*m, "a", "t2", jobs.TaskRunning, false, "J")),
				tick(15 * m),
			},
			want: []string{"a partial idle_timeout tasks=[t1+ t2-] images=[] 0s..15m0s"},
		},
		{
			name: "sns: messages of a closed group's tasks do not reopen it",
			evs: []event{
				ob(sns(1, 0, "a", "t1", jobs.TaskCompleted, true, "J")),
				tick(10 * m),
				ob(sns(2, 11*m, "a", "t1", jobs.TaskCompleted, true, "J")),
				ob(sns(3, 12*m, "a", "t1", jobs.TaskRunning, false, "J")),
				tick(time.Hour),
				ob(sns(4, 2*time.Hour, "a", "t9", jobs.TaskCompleted, true, "J")),
				tick(3 * time.Hour),
			},
			want: []string{
				"a succeeded idle_timeout tasks=[t1+] images=[] 0s..10m0s",
				"a succeeded idle_timeout tasks=[t9+] images=[] 2h0m0s..2h10m0s",
			},
		},
		{
			name: "sns: standalone and grouped jobs of one account side by side",
			evs: []event{
				ob(sns(1, 0, "a", "g1", jobs.TaskRunning, false, "J")),
				ob(sns(2, 1*m, "a", "s1", jobs.TaskCompleted, true, "")),
				ob(sns(3, 2*m, "a", "g1", jobs.TaskCompleted, true, "J")),
				ob(sns(4, 3*m, "a", "s1", jobs.TaskRunning, false, "")),
				tick(12 * m),
			},
			want: []string{
				"a succeeded terminal_result tasks=[s1+] images=[] 1m0s..1m0s",
				"a succeeded idle_timeout tasks=[g1+] images=[] 0s..12m0s",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := summaries(newHarness(t, tc.cfg).run(tc.evs))
			if !slices.Equal(got, tc.want) {
				t.Errorf("records:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestClosedTaskMemoryIsBounded(t *testing.T) {
	t.Parallel()
	cfg := jobs.Config{ClosedTaskMemory: 3}
	h := newHarness(t, cfg)
	for i, id := range []string{"t1", "t2", "t3", "t4"} {
		h.step(sns(uint64(i+1), 0, "_", id, jobs.TaskCompleted, true, ""))
	}
	st := h.states[jobs.KeyOf(sns(1, 0, "_", "t1", "", true, ""), cfg)]
	if want := []string{"t2", "t3", "t4"}; !slices.Equal(st.ClosedTasks, want) {
		t.Fatalf("closed tasks %q, want %q", st.ClosedTasks, want)
	}
	// t2 is remembered, t1 forgotten: a repeat of t1 is a new job.
	h.step(sns(5, 0, "_", "t2", jobs.TaskCompleted, true, ""))
	h.step(sns(6, 0, "_", "t1", jobs.TaskCompleted, true, ""))
	if got := len(h.out); got != 5 {
		t.Fatalf("%d records, want 5", got)
	}
	if len(st.ClosedTasks) != 3 {
		t.Fatalf("memory grew to %d", len(st.ClosedTasks))
	}
}

func TestRedeliveryIsANoOp(t *testing.T) {
	t.Parallel()
	list := []jobs.Observation{
		pre(1, 0, "a", "i1"),
		task(2, 1*m, "a", "i1", true, "x"),
		sns(3, 1*m, "_", "t1", jobs.TaskRunning, false, "J"),
		sns(4, 2*m, "_", "t1", jobs.TaskCompleted, true, "J"),
		jobEv(5, 2*m, "a", "i1", true, "f"),
		sns(6, 3*m, "_", "t2", jobs.TaskCompleted, true, ""),
	}
	cases := []struct {
		name  string
		again func(i int) []int // which earlier observations to redeliver after list[i]
	}{
		{"each at once", func(i int) []int { return []int{i} }},
		{"all earlier ones", func(i int) []int {
			out := make([]int, i+1)
			for j := range out {
				out[j] = j
			}
			return out
		}},
		{"the first, every time", func(int) []int { return []int{0} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := summaries(newHarness(t, jobs.Config{}).run(obs(list...)))
			h := newHarness(t, jobs.Config{})
			for i, o := range list {
				if !h.step(o) {
					t.Fatalf("first delivery of %d reported no change", o.Seq)
				}
				for _, j := range tc.again(i) {
					k := jobs.KeyOf(list[j], h.cfg)
					if _, ok := h.states[k]; !ok {
						continue
					}
					before := mustJSON(t, h.states[k])
					n := len(h.out)
					if h.step(list[j]) {
						t.Fatalf("redelivery of %d reported a change", list[j].Seq)
					}
					if len(h.out) != n || mustJSON(t, h.states[k]) != before {
						t.Fatalf("redelivery of %d changed something", list[j].Seq)
					}
				}
			}
			if got := summaries(h.out); !slices.Equal(got, want) {
				t.Errorf("records:\n got  %q\n want %q", got, want)
			}
		})
	}
}

func TestJobIDs(t *testing.T) {
	t.Parallel()
	scenario := obs(
		task(1, 0, "a", "i1", true),
		jobEv(2, 1*m, "a", "i1", true),
		task(3, 2*m, "a", "i2", true),
		jobEv(4, 3*m, "a", "i2", true),
		task(5, 3*m, "b", "i3", true),
		jobEv(6, 4*m, "b", "i3", true),
		sns(7, 5*m, "a", "t1", jobs.TaskCompleted, true, ""),
		sns(8, 5*m, "a", "t2", jobs.TaskCompleted, true, "J"),
	)
	scenario = append(scenario, tick(time.Hour))
	first := newHarness(t, jobs.Config{}).run(scenario)
	second := newHarness(t, jobs.Config{}).run(scenario)
	if len(first) != 5 {
		t.Fatalf("%d records, want 5", len(first))
	}
	shape := regexp.MustCompile(`^j_[a-z2-7]{26}$`)
	seen := map[string]bool{}
	for i := range first {
		id := first[i].JobID
		if id != second[i].JobID {
			t.Errorf("record %d: id %s, then %s", i, id, second[i].JobID)
		}
		if !shape.MatchString(id) {
			t.Errorf("id %q has the wrong shape", id)
		}
		if seen[id] {
			t.Errorf("id %s used twice", id)
		}
		seen[id] = true
	}

	k := jobs.Key{Source: "default", Account: "a"}
	base := jobs.JobID(k, "", 1)
	if got := newHarness(t, jobs.Config{}).run(obs(task(1, 0, "a", "x", true), jobEv(2, 0, "a", "x", true))); got[0].JobID != base {
		t.Errorf("record id %s, JobID %s", got[0].JobID, base)
	}
	// The same job opened by a later observation is another job.
	if got := newHarness(t, jobs.Config{}).run(obs(task(9, 0, "a", "x", true), jobEv(10, 0, "a", "x", true))); got[0].JobID == base {
		t.Error("a different opening sequence gave the same id")
	}
	for name, other := range map[string]string{
		"sequence": jobs.JobID(k, "", 2),
		"group":    jobs.JobID(k, "job:J", 1),
		"source":   jobs.JobID(jobs.Key{Source: "other", Account: "a"}, "", 1),
		"account":  jobs.JobID(jobs.Key{Source: "default", Account: "b"}, "", 1),
		"sns":      jobs.JobID(jobs.Key{SNS: true, Source: "default", Account: "a"}, "", 1),
		"invoke":   jobs.JobID(jobs.Key{Source: "default", Account: "a", ByInvoke: true}, "", 1),
	} {
		if other == base {
			t.Errorf("a different %s gave the same id", name)
		}
	}
}

func TestKeyToken(t *testing.T) {
	t.Parallel()
	safe := regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
	keys := []jobs.Key{
		{Source: "default", Account: "a_abc"},
		{SNS: true, Source: "default", Account: "a_abc"},
		{Source: "default", Account: "a_abc", ByInvoke: true},
		{Source: "default", Account: "a_abc", ByInvoke: true, InvokeID: "inv.1 *>"},
		{Source: "default", Account: "a_abc", ByInvoke: true, InvokeID: "inv.2"},
		{SNS: true, Source: "eks", Account: "_"},
		{SNS: true, Source: "eks", Account: "A.B"},
		{SNS: true, Source: "eks", Account: "a.b"},
	}
	seen := map[string]jobs.Key{}
	for _, k := range keys {
		tok := k.Token()
		if !safe.MatchString(tok) || strings.HasPrefix(tok, ".") || strings.HasSuffix(tok, ".") {
			t.Errorf("%s: token %q is not a KV key", k, tok)
		}
		if prev, ok := seen[tok]; ok {
			t.Errorf("%s and %s share token %q", prev, k, tok)
		}
		seen[tok] = k
	}
	if got := (jobs.Key{SNS: true, Source: "eks", Account: "_"}).Token(); got != "sns.eks._" {
		t.Errorf("token %q", got)
	}
}

func TestStateJSONRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  jobs.Config
		evs  []event
	}{
		{"callbacks", jobs.Config{}, []event{
			ob(pre(1, 0, "a", "i1")),
			ob(task(2, 1*m, "a", "i1", true, "x1")),
			ob(task(3, 1*m, "b", "i2", false)),
			ob(jobEv(4, 2*m, "a", "i1", true, "f")),
			ob(task(5, 3*m, "a", "i3", true)),
			tick(12 * m),
			ob(task(6, 14*m, "b", "i4", true)),
			tick(time.Hour),
		}},
		{"invoke keying", jobs.Config{Key: jobs.KeyInvokeID}, []event{
			ob(task(1, 0, "a", "X", true)),
			ob(task(2, 0, "a", "", true)),
			ob(jobEv(3, 1*m, "a", "X", true)),
			tick(time.Hour),
		}},
		{"sns", jobs.Config{ClosedTaskMemory: 2}, []event{
			ob(sns(1, 0, "_", "t1", jobs.TaskRunning, false, "J")),
			ob(sns(2, 1*m, "_", "t2", jobs.TaskCompleted, true, "J", "t2-1")),
			ob(sns(3, 1*m, "_", "t3", jobs.TaskFailed, false, "")),
			ob(sns(4, 2*m, "_", "t3", jobs.TaskCompleted, true, "")),
			tick(20 * m),
			ob(sns(5, 21*m, "_", "t1", jobs.TaskCompleted, true, "J")),
			ob(sns(6, 22*m, "_", "t4", jobs.TaskCompleted, true, "")),
			ob(sns(7, 22*m, "_", "t3", jobs.TaskCompleted, true, "")),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := mustJSON(t, newHarness(t, tc.cfg).run(tc.evs))
			h := newHarness(t, tc.cfg)
			h.roundTrip = true
			if got := mustJSON(t, h.run(tc.evs)); got != want {
				t.Errorf("with JSON round trips:\n got  %s\n want %s", got, want)
			}
		})
	}
}

func TestRecordJSON(t *testing.T) {
	t.Parallel()
	recs := newHarness(t, jobs.Config{}).run(obs(
		cb(jobs.KindTaskFinished, 1, 0, "a_x", "inv-1", true, "img1"),
		jobEv(2, 90*time.Second, "a_x", "inv-2", true, "final"),
	))
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if want := []string{"inv-1", "inv-2"}; !slices.Equal(r.InvokeIDs, want) {
		t.Errorf("invoke ids %q, want %q", r.InvokeIDs, want)
	}
	got := mustJSON(t, r)
	want := `{"job_id":"` + r.JobID + `","account":"a_x","source":"default","status":"succeeded","closed_by":"job_event",` +
		`"tasks":[{"task_id":"1","invoke_id":"inv-1","success":true,"images":[{"image_id":"img1","url":"https://img.example/img1.png","type":"png","width":512,"height":512}]}],` +
		`"images":[{"image_id":"final","url":"https://img.example/final.png","type":"png","width":512,"height":512}],` +
		`"credits":{"reserved":0,"committed":0,"released":0},` +
		`"started_at":"2025-06-01T12:00:00Z","finished_at":"2025-06-01T12:01:30Z"}`
	if got != want {
		t.Errorf("record JSON:\n got  %s\n want %s", got, want)
	}

	empty := newHarness(t, jobs.Config{}).run(obs(jobEv(1, 0, "a", "", false)))
	if got := mustJSON(t, empty[0]); !strings.Contains(got, `"tasks":[],"images":[]`) {
		t.Errorf("empty job JSON %s: want empty arrays, not null", got)
	}

	var back map[string]json.RawMessage
	r.Images[0].URI = "s3://sd-archive/a_x/final.png"
	if err := json.Unmarshal([]byte(mustJSON(t, r)), &back); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(back["images"]), `"uri":"s3://sd-archive/a_x/final.png"`) {
		t.Errorf("archived uri missing: %s", back["images"])
	}
}

func TestTaskIDOfCallbacks(t *testing.T) {
	t.Parallel()
	o := task(42, 0, "a", "i", true)
	o.TaskID = "evt-42"
	recs := newHarness(t, jobs.Config{}).run(obs(o, task(43, 0, "a", "i", true), jobEv(44, 0, "a", "i", true)))
	if got := []string{recs[0].Tasks[0].TaskID, recs[0].Tasks[1].TaskID}; !slices.Equal(got, []string{"evt-42", "43"}) {
		t.Errorf("task ids %q", got)
	}
}

func TestImageFromURI(t *testing.T) {
	t.Parallel()
	cases := []struct {
		uri  string
		want jobs.Image
	}{
		{"s3://outputbucket/output/test-t2i/test-t2i-abcd-1.png", jobs.Image{ImageID: "test-t2i-abcd-1", URL: "s3://outputbucket/output/test-t2i/test-t2i-abcd-1.png", Type: "png"}},
		{"s3://b/k/IMG.JPEG", jobs.Image{ImageID: "IMG", URL: "s3://b/k/IMG.JPEG", Type: "jpeg"}},
		{"s3://b/noext", jobs.Image{ImageID: "noext", URL: "s3://b/noext"}},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			t.Parallel()
			if got := jobs.ImageFromURI(tc.uri); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	var st jobs.State
	cfg := jobs.Config{}
	if _, ok := jobs.Deadline(&st, cfg); ok {
		t.Fatal("a zero state has a deadline")
	}
	for _, o := range []jobs.Observation{
		sns(1, 0, "_", "a", jobs.TaskRunning, false, "J1"),
		sns(2, 3*m, "_", "b", jobs.TaskRunning, false, "J2"),
		sns(3, 4*m, "_", "c", jobs.TaskRunning, false, ""), // opens nothing
	} {
		if _, _, err := jobs.Step(&st, o, cfg); err != nil {
			t.Fatal(err)
		}
	}
	d, ok := jobs.Deadline(&st, cfg)
	if !ok || !d.Equal(t0.Add(10*m)) {
		t.Fatalf("deadline %v %v, want t0+10m", d, ok)
	}
	if recs := jobs.Tick(&st, t0.Add(10*m), cfg); len(recs) != 1 {
		t.Fatalf("tick closed %d", len(recs))
	}
	if d, ok = jobs.Deadline(&st, cfg); !ok || !d.Equal(t0.Add(13*m)) {
		t.Fatalf("deadline %v %v, want t0+13m", d, ok)
	}
	if recs := jobs.Tick(&st, t0.Add(13*m), cfg); len(recs) != 1 {
		t.Fatalf("tick closed %d", len(recs))
	}
	if _, ok = jobs.Deadline(&st, cfg); ok {
		t.Fatal("deadline after every job closed")
	}
}

func TestStepErrors(t *testing.T) {
	t.Parallel()
	good := task(1, 0, "a", "i", true)
	cases := []struct {
		name    string
		state   jobs.State
		obs     func(o jobs.Observation) jobs.Observation
		cfg     jobs.Config
		wantErr error
	}{
		{name: "no sequence", obs: func(o jobs.Observation) jobs.Observation { o.Seq = 0; return o }, wantErr: jobs.ErrInvalidObservation},
		{name: "no time", obs: func(o jobs.Observation) jobs.Observation { o.Time = time.Time{}; return o }, wantErr: jobs.ErrInvalidObservation},
		{name: "no source", obs: func(o jobs.Observation) jobs.Observation { o.Source = ""; return o }, wantErr: jobs.ErrInvalidObservation},
		{name: "no account", obs: func(o jobs.Observation) jobs.Observation { o.Account = ""; return o }, wantErr: jobs.ErrInvalidObservation},
		{name: "unknown kind", obs: func(o jobs.Observation) jobs.Observation { o.Kind = "apiAccessCommit"; return o }, wantErr: jobs.ErrInvalidObservation},
		{name: "sns without task id", obs: func(jobs.Observation) jobs.Observation {
			return sns(1, 0, "_", "", jobs.TaskCompleted, true, "")
		}, wantErr: jobs.ErrInvalidObservation},
		{name: "sns with unknown status", obs: func(jobs.Observation) jobs.Observation {
			return sns(1, 0, "_", "t", "queued", true, "")
		}, wantErr: jobs.ErrInvalidObservation},
		{name: "bad config", obs: func(o jobs.Observation) jobs.Observation { return o }, cfg: jobs.Config{Key: "job"}, wantErr: jobs.ErrInvalidConfig},
		{name: "another key's state", state: jobs.State{Key: jobs.Key{Source: "default", Account: "b"}, LastSeq: 9},
			obs: func(o jobs.Observation) jobs.Observation { o.Seq = 10; return o }, wantErr: jobs.ErrKeyMismatch},
		{name: "fine", obs: func(o jobs.Observation) jobs.Observation { return o }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := tc.state
			before := mustJSON(t, st)
			out, changed, err := jobs.Step(&st, tc.obs(good), tc.cfg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err != nil && (changed || out.Chunks != nil || out.Closed != nil || mustJSON(t, st) != before) {
				t.Fatal("a failed step changed the state")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (jobs.Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	err := jobs.Config{Key: "job", IdleTimeout: -1, ClosedTaskMemory: -1}.Validate()
	if !errors.Is(err, jobs.ErrInvalidConfig) {
		t.Fatalf("error %v", err)
	}
	for _, field := range []string{"key", "idle_timeout", "closed_task_memory"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	for biz, want := range map[string]bool{
		"sdPreInvoke": true, "sdTaskFinished": true, "sdJobFinished": true,
		"apiAccessPreInvoke": false, "sdImgGenControlConfig": false, "": false, "sns": false,
	} {
		if k, ok := jobs.KindOf(biz); ok != want || (ok && string(k) != biz) {
			t.Errorf("KindOf(%q) = %q, %v", biz, k, ok)
		}
	}
}

func TestSkip(t *testing.T) {
	t.Parallel()
	cfg := jobs.Config{}
	o := task(1, 0, "a_1", "i1", true, "x")
	k := jobs.KeyOf(o, cfg)
	var st jobs.State
	if _, _, err := jobs.Step(&st, o, cfg); err != nil {
		t.Fatal(err)
	}
	if changed, err := jobs.Skip(&st, k, 2); err != nil || !changed {
		t.Fatalf("skip 2: changed %v, err %v", changed, err)
	}
	if changed, err := jobs.Skip(&st, k, 2); err != nil || changed {
		t.Fatalf("skip 2 again: changed %v, err %v", changed, err)
	}
	if _, changed, _ := jobs.Step(&st, task(2, time.Second, "a_1", "i1", true), cfg); changed {
		t.Fatal("an observation at a skipped sequence was applied")
	}
	if out, _, _ := jobs.Step(&st, jobEv(3, 2*time.Second, "a_1", "i1", true), cfg); len(out.Closed) != 1 || out.Closed[0].Job.TaskCount != 1 {
		t.Fatalf("job after skip: %+v", out)
	}
	other := jobs.KeyOf(task(4, 0, "a_2", "", true), cfg)
	if _, err := jobs.Skip(&st, other, 4); !errors.Is(err, jobs.ErrKeyMismatch) {
		t.Fatalf("skip with another key: %v", err)
	}
	if _, err := jobs.Skip(&jobs.State{}, k, 0); !errors.Is(err, jobs.ErrInvalidObservation) {
		t.Fatalf("skip seq 0: %v", err)
	}
}
