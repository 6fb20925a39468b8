package jobs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// manyImages returns n image ids prefixed with p.
func manyImages(p string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", p, i)
	}
	return out
}

func TestLimits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  jobs.Config
		evs  []event
		want []string
	}{
		{
			name: "task limit: the job closes at its last task, the next task opens the next job",
			cfg:  jobs.Config{MaxTasks: 2},
			evs: obs(
				pre(1, 0, "a", "i1"),
				task(2, 1*m, "a", "i1", true, "x1"),
				task(3, 2*m, "a", "i1", true, "x2"),
				task(4, 3*m, "a", "i1", false),
				jobEv(5, 4*m, "a", "i1", true, "f"),
			),
			want: []string{
				"a succeeded task_limit tasks=[2+(x1) 3+(x2)] images=[x1 x2] 0s..2m0s",
				"a failed job_event tasks=[4-] images=[f] 3m0s..4m0s",
			},
		},
		{
			name: "task limit: a job event right after it is an empty job",
			cfg:  jobs.Config{MaxTasks: 1},
			evs: obs(
				task(1, 0, "a", "i1", true),
				jobEv(2, 1*m, "a", "i1", true),
			),
			want: []string{
				"a succeeded task_limit tasks=[1+] images=[] 0s..0s",
				"a succeeded job_event tasks=[] images=[] 1m0s..1m0s",
			},
		},
		{
			name: "task limit: pre-invokes count half",
			cfg:  jobs.Config{MaxTasks: 2},
			evs: []event{
				ob(pre(1, 0, "a", "i1")),
				ob(pre(2, 1*m, "a", "i2")),
				ob(pre(3, 2*m, "a", "i3")),
				ob(pre(4, 3*m, "a", "i4")),
				ob(task(5, 4*m, "a", "i4", true)),
				tick(time.Hour),
			},
			want: []string{
				"a failed task_limit tasks=[] images=[] 0s..3m0s",
				"a succeeded idle_timeout tasks=[5+] images=[] 4m0s..14m0s",
			},
		},
		{
			name: "max duration: noticed by the next task, at the limit",
			cfg:  jobs.Config{MaxDuration: 30 * m},
			evs: obs(
				task(1, 0, "a", "i1", true),
				task(2, 9*m, "a", "i1", true),
				task(3, 18*m, "a", "i1", true),
				task(4, 27*m, "a", "i1", true),
				task(5, 36*m, "a", "i1", true),
				jobEv(6, 37*m, "a", "i1", true),
			),
			want: []string{
				"a succeeded max_duration tasks=[1+ 2+ 3+ 4+] images=[] 0s..30m0s",
				"a succeeded job_event tasks=[5+] images=[] 36m0s..37m0s",
			},
		},
		{
			name: "max duration: a tick at the limit closes the job (the clock is the tick's watermark)",
			cfg:  jobs.Config{MaxDuration: 30 * m},
			evs: []event{
				ob(task(1, 0, "a", "i1", true)),
				ob(task(2, 9*m, "a", "i1", true)),
				ob(task(3, 18*m, "a", "i1", true)),
				ob(task(4, 27*m, "a", "i1", true)),
				tick(29*m + 59*time.Second),
				tick(30 * m),
			},
			want: []string{"a succeeded max_duration tasks=[1+ 2+ 3+ 4+] images=[] 0s..30m0s"},
		},
		{
			name: "max duration: the idle timeout comes first",
			cfg:  jobs.Config{MaxDuration: 30 * m},
			evs: []event{
				ob(task(1, 0, "a", "i1", true)),
				ob(task(2, 8*m, "a", "i1", true)),
				tick(18 * m),
			},
			want: []string{"a succeeded idle_timeout tasks=[1+ 2+] images=[] 0s..18m0s"},
		},
		{
			name: "images per task: the first ones are kept",
			cfg:  jobs.Config{MaxImagesPerTask: 2},
			evs: obs(
				task(1, 0, "a", "i1", true, "x1", "x2", "x3", "x4"),
				jobEv(2, 1*m, "a", "i1", true, "f1", "f2", "f3"),
			),
			want: []string{"a succeeded job_event tasks=[1+(x1,x2)] images=[f1 f2] 0s..1m0s"},
		},
		{
			name: "task limit: SNS tasks grouped by context.job_id",
			cfg:  jobs.Config{MaxTasks: 2},
			evs: []event{
				ob(sns(1, 0, "_", "t1", jobs.TaskRunning, false, "J")),
				ob(sns(2, 1*m, "_", "t1", jobs.TaskRunning, false, "J")),
				ob(sns(3, 1*m, "_", "t2", jobs.TaskCompleted, true, "J", "o2")),
				ob(sns(4, 2*m, "_", "t1", jobs.TaskCompleted, true, "J", "o1")), // closed with its job
				ob(sns(5, 2*m, "_", "t3", jobs.TaskCompleted, true, "J", "o3")),
				tick(time.Hour),
			},
			want: []string{
				"_ partial task_limit tasks=[t1- t2+(o2)] images=[o2] 0s..1m0s",
				"_ succeeded idle_timeout tasks=[t3+(o3)] images=[o3] 2m0s..12m0s",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, roundTrip := range []bool{false, true} {
				h := newHarness(t, tc.cfg)
				h.roundTrip = roundTrip
				got := summaries(h.run(tc.evs))
				if !slices.Equal(got, tc.want) {
					t.Fatalf("round trip %v:\n got  %q\n want %q", roundTrip, got, tc.want)
				}
			}
		})
	}
}

// TestSizeLimit: a task that would take its job's record beyond
// MaxRecordBytes closes the job and opens the next one.
func TestSizeLimit(t *testing.T) {
	t.Parallel()
	cfg := jobs.Config{MaxRecordBytes: jobs.MinRecordBytes}
	long := strings.Repeat("x", 100)
	var evs []event
	for i := range 3 {
		evs = append(evs, ob(task(uint64(i+1), time.Duration(i)*m, "a", "i1", true, manyImages(long, 64)...)))
	}
	evs = append(evs, ob(jobEv(4, 3*m, "a", "i1", true)))
	recs := newHarness(t, cfg).run(evs)
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s %d/%d", r.ClosedBy, len(r.Tasks), len(r.Tasks[0].Images)))
		if raw := mustJSON(t, r); len(raw) > cfg.MaxRecordBytes {
			t.Errorf("record of %d bytes", len(raw))
		}
	}
	if want := []string{"size_limit 1/64", "size_limit 1/64", "job_event 1/64"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestImagesDroppedAreCounted: the images left out of a task and of a job
// event are counted, and a task whose images alone would not fit an empty
// job keeps those that fit.
func TestImagesDroppedAreCounted(t *testing.T) {
	t.Parallel()
	cfg := jobs.Config{MaxRecordBytes: jobs.MinRecordBytes}
	huge := task(1, 0, "a", "i1", true, manyImages("x", 30_000)...)
	recs := newHarness(t, cfg).run(obs(huge, jobEv(2, m, "a", "i1", true, manyImages("f", 100)...)))
	if len(recs) != 1 {
		t.Fatalf("%d records: %v", len(recs), summaries(recs))
	}
	r := recs[0]
	kept := len(r.Tasks[0].Images)
	if kept == 0 || kept > jobs.DefaultMaxImagesPerTask || kept+r.Tasks[0].ImagesDropped != 30_000 {
		t.Fatalf("task keeps %d images, drops %d", kept, r.Tasks[0].ImagesDropped)
	}
	if n := len(r.Images); n == 0 || n+r.ImagesDropped != 100 {
		t.Fatalf("job event keeps %d images, drops %d", n, r.ImagesDropped)
	}
	if raw := mustJSON(t, r); len(raw) > cfg.MaxRecordBytes {
		t.Fatalf("record of %d bytes, limit %d", len(raw), cfg.MaxRecordBytes)
	}
}

// TestRecordBytesBound: whatever the images' contents (characters that JSON
// escapes, invalid UTF-8), a record never encodes to more than
// MaxRecordBytes.
func TestRecordBytesBound(t *testing.T) {
	t.Parallel()
	cfg := jobs.Config{MaxRecordBytes: jobs.MinRecordBytes, MaxTasks: 1000}
	var st jobs.State
	var book jobs.Book
	var recs []jobs.Record
	for i := range 200 {
		o := task(uint64(i+1), time.Duration(i)*time.Second, "a", "i<&>", true)
		for j := range 8 {
			o.Images = append(o.Images, jobs.Image{
				ImageID: fmt.Sprintf("<%d-%d>\u2028\xff", i, j), URL: strings.Repeat("<&\x01\xfe", 200), Type: "\"png\\",
			})
		}
		got, _, err := book.Step(&st, o, cfg)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, got...)
	}
	if len(recs) < 2 {
		t.Fatalf("%d records: the size limit never applied", len(recs))
	}
	for _, r := range recs {
		if r.ClosedBy != jobs.ClosedBySizeLimit {
			t.Errorf("job closed by %s", r.ClosedBy)
		}
		if raw := mustJSON(t, r); len(raw) > cfg.MaxRecordBytes {
			t.Errorf("record of %d bytes, limit %d", len(raw), cfg.MaxRecordBytes)
		}
	}
}

// TestStateSizeDoesNotGrowWithTheJob: the stored State of a job stays
// within InlineBytes and its counters whether the job holds 10 tasks or
// 1,000: what a task adds is in a fact, handed out in chunks.
func TestStateSizeDoesNotGrowWithTheJob(t *testing.T) {
	t.Parallel()
	cfg := jobs.Config{MaxTasks: 100_000}
	var st jobs.State
	largest := map[int]int{}
	chunks := 0
	for i := range 1000 {
		out, _, err := jobs.Step(&st, task(uint64(i+1), time.Duration(i)*time.Second, "a", "inv", true, "x", "y"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		chunks += len(out.Chunks)
		n := len(mustJSON(t, st))
		for _, upTo := range []int{10, 100, 1000} {
			if i < upTo {
				largest[upTo] = max(largest[upTo], n)
			}
		}
	}
	if chunks == 0 || largest[1000] > jobs.InlineBytes+1024 || largest[1000] > largest[100]+64 {
		t.Fatalf("largest state up to 10, 100, 1,000 tasks: %v bytes; %d chunks", largest, chunks)
	}
}

// TestStateBound: an SNS key with grouped jobs of long task ids closes its
// oldest jobs by size limit rather than let its State grow without bound.
func TestStateBound(t *testing.T) {
	t.Parallel()
	cfg := jobs.Config{MaxTasks: 100_000}
	var st jobs.State
	var book jobs.Book
	var recs []jobs.Record
	for i := range 6000 {
		id := fmt.Sprintf("%060d", i)
		got, _, err := book.Step(&st, sns(uint64(i+1), time.Duration(i)*time.Millisecond, "_", id, jobs.TaskRunning, false, fmt.Sprintf("J%d", i%3)), cfg)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, got...)
		if i%250 != 0 {
			continue
		}
		if n := len(mustJSON(t, st)); n > 256<<10 {
			t.Fatalf("after %d messages the state is %d bytes", i+1, n)
		}
	}
	if len(recs) == 0 || recs[0].ClosedBy != jobs.ClosedBySizeLimit {
		t.Fatalf("records %v", summaries(recs))
	}
}

// TestLegacyState: a State stored before jobs kept their tasks in facts
// still closes its open jobs with every task, the old ones first.
func TestLegacyState(t *testing.T) {
	t.Parallel()
	k := jobs.Key{Source: "default", Account: "a"}
	legacy := `{"key":{"source":"default","account":"a"},"last_seq":2,"open":[{"id":"j_old","open_seq":1,` +
		`"started_at":"2025-06-01T12:00:00Z","deadline":"2025-06-01T12:11:00Z","invoke_ids":["i1"],` +
		`"tasks":[{"task_id":"2","invoke_id":"i1","success":true,"images":[{"image_id":"x1","url":"u","type":"png","width":1,"height":1}],"terminal":true}]}]}`
	var st jobs.State
	if err := json.Unmarshal([]byte(legacy), &st); err != nil {
		t.Fatal(err)
	}
	var book jobs.Book
	cfg := jobs.Config{}
	if _, _, err := book.Step(&st, task(3, 2*m, "a", "i2", false), cfg); err != nil {
		t.Fatal(err)
	}
	recs, _, err := book.Step(&st, jobEv(4, 3*m, "a", "i3", true, "f"), cfg)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%v %v", summaries(recs), err)
	}
	if got, want := summary(recs[0]), "a partial job_event tasks=[2+(x1) 3-] images=[f] 0s..3m0s"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if want := []string{"i1", "i2", "i3"}; !slices.Equal(recs[0].InvokeIDs, want) {
		t.Fatalf("invoke ids %q", recs[0].InvokeIDs)
	}
	if st.Key != k || len(st.Open) != 0 {
		t.Fatalf("state %+v", st)
	}

	// An SNS job: a legacy running task gets its outcome from a new fact.
	legacy = `{"key":{"sns":true,"source":"eks","account":"_"},"last_seq":1,"open":[{"id":"j_sns","group":"job:J","open_seq":1,` +
		`"started_at":"2025-06-01T12:00:00Z","deadline":"2025-06-01T12:10:00Z","tasks":[{"task_id":"t1","invoke_id":"","success":false,"images":[]}]}]}`
	st = jobs.State{}
	if err := json.Unmarshal([]byte(legacy), &st); err != nil {
		t.Fatal(err)
	}
	if _, _, err := book.Step(&st, sns(2, m, "_", "t1", jobs.TaskCompleted, true, "J", "o1"), cfg); err != nil {
		t.Fatal(err)
	}
	recs, err = book.Tick(&st, t0.Add(time.Hour), cfg)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%v %v", summaries(recs), err)
	}
	if got, want := summary(recs[0]), "_ succeeded idle_timeout tasks=[t1+(o1)] images=[o1] 0s..11m0s"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestBuild: Build takes the job's facts (those it still held and those of
// its chunks) up to the closing sequence, each sequence once, and reports
// the ones missing with what it could build.
func TestBuild(t *testing.T) {
	t.Parallel()
	cfg := jobs.Config{}
	var st jobs.State
	var chunks []jobs.Chunk
	n := 0
	for len(chunks) < 2 {
		n++
		out, _, err := jobs.Step(&st, task(uint64(n), time.Duration(n)*time.Second, "a", "i", true, "x"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, out.Chunks...)
	}
	if chunks[0].ID() == chunks[1].ID() || chunks[0].ID() != "f-"+chunks[0].JobID+"-1" {
		t.Fatalf("chunk ids %s, %s", chunks[0].ID(), chunks[1].ID())
	}
	out, _, err := jobs.Step(&st, jobEv(uint64(n+1), time.Duration(n+1)*time.Second, "a", "i", true), cfg)
	if err != nil || len(out.Closed) != 1 {
		t.Fatalf("%+v %v", out, err)
	}
	c := out.Closed[0]
	stored := slices.Concat(chunks[0].Facts, chunks[1].Facts)
	stray := stored[0]
	stray.Seq = uint64(n + 5) // above the closing sequence
	r, err := jobs.Build(c, slices.Concat(stored, chunks[1].Facts, []jobs.Fact{stray}))
	if err != nil || len(r.Tasks) != n || r.Tasks[0].TaskID != "1" || r.Tasks[n-1].TaskID != strconv.Itoa(n) {
		t.Fatalf("%d tasks %v", len(r.Tasks), err)
	}
	r, err = jobs.Build(c, chunks[1].Facts)
	if !errors.Is(err, jobs.ErrFactsMissing) || len(r.Tasks) != n-len(chunks[0].Facts) {
		t.Fatalf("%d tasks %v", len(r.Tasks), err)
	}
}

func TestConfigValidateLimits(t *testing.T) {
	t.Parallel()
	err := jobs.Config{MaxTasks: -1, MaxDuration: -1, MaxImagesPerTask: -1, MaxRecordBytes: 1000}.Validate()
	if !errors.Is(err, jobs.ErrInvalidConfig) {
		t.Fatalf("error %v", err)
	}
	for _, field := range []string{"max_tasks", "max_duration", "max_images_per_task", "max_record_bytes"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}
