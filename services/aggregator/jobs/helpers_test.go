package jobs_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// t0 is the fake clock's origin; every time in the tests is t0 plus an offset.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func images(ids ...string) []jobs.Image {
	var out []jobs.Image
	for _, id := range ids {
		out = append(out, jobs.Image{ImageID: id, URL: "https://img.example/" + id + ".png", Type: "png", Width: 512, Height: 512})
	}
	return out
}

func cb(kind jobs.Kind, seq uint64, d time.Duration, account, invoke string, ok bool, imgs ...string) jobs.Observation {
	return jobs.Observation{
		Seq: seq, Time: t0.Add(d), Source: "default", Account: account, Kind: kind,
		InvokeID: invoke, Success: ok, Images: images(imgs...),
	}
}

func pre(seq uint64, d time.Duration, account, invoke string) jobs.Observation {
	return cb(jobs.KindPreInvoke, seq, d, account, invoke, true)
}

func task(seq uint64, d time.Duration, account, invoke string, ok bool, imgs ...string) jobs.Observation {
	return cb(jobs.KindTaskFinished, seq, d, account, invoke, ok, imgs...)
}

func jobEv(seq uint64, d time.Duration, account, invoke string, ok bool, imgs ...string) jobs.Observation {
	return cb(jobs.KindJobFinished, seq, d, account, invoke, ok, imgs...)
}

func sns(seq uint64, d time.Duration, account, id string, status jobs.TaskStatus, result bool, jobID string, uris ...string) jobs.Observation {
	o := jobs.Observation{
		Seq: seq, Time: t0.Add(d), Source: "eks", Account: account, Kind: jobs.KindSNSResult,
		TaskID: id, Success: result, Status: status, JobID: jobID,
	}
	for _, u := range uris {
		o.Images = append(o.Images, jobs.ImageFromURI("s3://out/"+u+".png"))
	}
	return o
}

// event is one input of a scenario: an observation, or a Tick of every state
// at t0+tick when obs is nil.
type event struct {
	obs  *jobs.Observation
	tick time.Duration
}

func ob(o jobs.Observation) event { return event{obs: &o} }
func tick(d time.Duration) event  { return event{tick: d} }
func obs(os ...jobs.Observation) []event {
	var out []event
	for _, o := range os {
		out = append(out, ob(o))
	}
	return out
}

// harness plays the adapter: one State per Key, facts in a Book, records in
// emission order.
type harness struct {
	t         *testing.T
	cfg       jobs.Config
	states    map[jobs.Key]*jobs.State
	book      jobs.Book
	out       []jobs.Record
	roundTrip bool // store every state and fact as JSON between calls
}

func newHarness(t *testing.T, cfg jobs.Config) *harness {
	t.Helper()
	return &harness{t: t, cfg: cfg, states: map[jobs.Key]*jobs.State{}}
}

func (h *harness) state(k jobs.Key) *jobs.State {
	st := h.states[k]
	if st == nil {
		st = &jobs.State{}
		h.states[k] = st
	}
	return st
}

func (h *harness) store(k jobs.Key, st *jobs.State) {
	if !h.roundTrip {
		return
	}
	raw, err := json.Marshal(st)
	if err != nil {
		h.t.Fatal(err)
	}
	var back jobs.State
	if err := json.Unmarshal(raw, &back); err != nil {
		h.t.Fatal(err)
	}
	h.states[k] = &back
}

func (h *harness) step(o jobs.Observation) (changed bool) {
	h.t.Helper()
	k := jobs.KeyOf(o, h.cfg)
	st := h.state(k)
	out, changed, err := jobs.Step(st, o, h.cfg)
	if err != nil {
		h.t.Fatalf("step %d: %v", o.Seq, err)
	}
	for _, c := range out.Chunks {
		if h.roundTrip {
			var back jobs.Chunk
			if err := json.Unmarshal([]byte(mustJSON(h.t, c)), &back); err != nil {
				h.t.Fatal(err)
			}
			c = back
		}
		h.book.Keep(c)
	}
	h.close(out.Closed)
	h.store(k, st)
	return changed
}

// close builds the records of closed and forgets their facts.
func (h *harness) close(closed []jobs.Closing) {
	h.t.Helper()
	for _, c := range closed {
		r, err := jobs.Build(c, h.book.Facts(c.Job.ID))
		if err != nil {
			h.t.Fatalf("build %s: %v", c.Job.ID, err)
		}
		h.book.Forget(c.Job.ID)
		h.out = append(h.out, r)
	}
}

// tickAll ticks every state, in Token order for a deterministic output.
func (h *harness) tickAll(now time.Time) {
	keys := make([]jobs.Key, 0, len(h.states))
	for k := range h.states {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b jobs.Key) int { return strings.Compare(a.Token(), b.Token()) })
	for _, k := range keys {
		st := h.states[k]
		if d, ok := jobs.Deadline(st, h.cfg); !ok || now.Before(d) {
			if closed := jobs.Tick(st, now, h.cfg); len(closed) != 0 {
				h.t.Fatalf("tick of %s before its deadline closed %d jobs", k, len(closed))
			}
			continue
		}
		closed := jobs.Tick(st, now, h.cfg)
		if len(closed) == 0 {
			h.t.Fatalf("tick of %s at its deadline closed nothing", k)
		}
		h.close(closed)
		h.store(k, st)
	}
}

func (h *harness) run(evs []event) []jobs.Record {
	h.t.Helper()
	for _, e := range evs {
		if e.obs != nil {
			h.step(*e.obs)
		} else {
			h.tickAll(t0.Add(e.tick))
		}
	}
	return h.out
}

// summary renders a record compactly: account status closed_by tasks
// (id+ succeeded, id- failed) top-level images and start..finish offsets.
func summary(r jobs.Record) string {
	var ts, is []string
	for _, t := range r.Tasks {
		mark := "-"
		if t.Success {
			mark = "+"
		}
		var ti []string
		for _, im := range t.Images {
			ti = append(ti, im.ImageID)
		}
		s := t.TaskID + mark
		if len(ti) > 0 {
			s += "(" + strings.Join(ti, ",") + ")"
		}
		ts = append(ts, s)
	}
	for _, im := range r.Images {
		is = append(is, im.ImageID)
	}
	return fmt.Sprintf("%s %s %s tasks=[%s] images=[%s] %s..%s",
		r.Account, r.Status, r.ClosedBy, strings.Join(ts, " "), strings.Join(is, " "),
		r.StartedAt.Sub(t0), r.FinishedAt.Sub(t0))
}

func summaries(rs []jobs.Record) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, summary(r))
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
