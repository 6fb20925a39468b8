package jobs_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// genObservations returns a stream of n observations in INGRESS order (times
// never decrease) mixing callback jobs of three accounts with SNS tasks,
// standalone and grouped, repeated and out of order.
func genObservations(r *rand.Rand, n int) []jobs.Observation {
	gaps := []time.Duration{0, 10 * time.Second, time.Minute, 4 * time.Minute, 12 * time.Minute}
	accounts := []string{"a_1", "a_2", "a_3"}
	snsAccounts := []string{"_", "a_1"}
	statuses := []jobs.TaskStatus{jobs.TaskRunning, jobs.TaskRunning, jobs.TaskCompleted, jobs.TaskFailed, jobs.TaskLegacy}
	groupOf := map[string]string{} // a task's context.job_id never changes
	var tasks []string
	now := t0
	out := make([]jobs.Observation, 0, n)
	for i := range n {
		g := gaps[r.IntN(len(gaps))]
		if g == 12*time.Minute && r.IntN(3) != 0 {
			g = 0 // long gaps are rarer
		}
		now = now.Add(g)
		o := jobs.Observation{Seq: uint64(i + 1), Time: now}
		if r.IntN(10) < 3 {
			var id string
			if len(tasks) > 0 && r.IntN(2) == 0 {
				id = tasks[r.IntN(len(tasks))]
			} else {
				id = fmt.Sprintf("t%d", len(tasks))
				tasks = append(tasks, id)
				groupOf[id] = []string{"", "", "J1", "J2"}[r.IntN(4)]
			}
			o.Kind, o.Source, o.TaskID, o.JobID = jobs.KindSNSResult, "eks", id, groupOf[id]
			o.Account = snsAccounts[len(id)%len(snsAccounts)]
			o.Status = statuses[r.IntN(len(statuses))]
			if o.Status != jobs.TaskRunning {
				o.Success = r.IntN(4) != 0
				if o.Success {
					o.Images = []jobs.Image{jobs.ImageFromURI(fmt.Sprintf("s3://out/%s-%d.png", id, r.IntN(3)))}
				}
			}
		} else {
			o.Source, o.Account = "default", accounts[r.IntN(len(accounts))]
			o.InvokeID = fmt.Sprintf("inv%d", r.IntN(4))
			switch k := r.IntN(20); {
			case k < 3:
				o.Kind = jobs.KindPreInvoke
			case k < 15:
				o.Kind = jobs.KindTaskFinished
			default:
				o.Kind = jobs.KindJobFinished
			}
			if o.Kind != jobs.KindPreInvoke {
				o.Success = r.IntN(4) != 0
				if o.Success {
					o.Images = images(fmt.Sprintf("img%d", i))
				}
			}
		}
		out = append(out, o)
	}
	return out
}

// replica plays an adapter whose KV holds JSON states, with optional noise:
// redeliveries, steps and ticks whose state write is lost after their records
// were published (a crash or a lost compare-and-set), and early ticks.
type replica struct {
	t     *testing.T
	cfg   jobs.Config
	kv    map[jobs.Key][]byte
	noise *rand.Rand // nil: no noise

	facts     map[string]map[string]string // job id -> chunk id -> chunk JSON (Nats-Msg-Id dedup)
	published map[string]string            // job id -> record JSON (Nats-Msg-Id dedup)
	chunks    int
	order     map[jobs.Key][]string // job ids per key, in first publication order
	dups      int
}

func newReplica(t *testing.T, cfg jobs.Config, noise *rand.Rand) *replica {
	return &replica{t: t, cfg: cfg, kv: map[jobs.Key][]byte{}, noise: noise,
		facts: map[string]map[string]string{}, published: map[string]string{}, order: map[jobs.Key][]string{}}
}

func (p *replica) load(k jobs.Key) *jobs.State {
	var st jobs.State
	if raw, ok := p.kv[k]; ok {
		if err := json.Unmarshal(raw, &st); err != nil {
			p.t.Fatal(err)
		}
	}
	return &st
}

func (p *replica) save(k jobs.Key, st *jobs.State) {
	raw, err := json.Marshal(st)
	if err != nil {
		p.t.Fatal(err)
	}
	p.kv[k] = raw
}

// keep stores chunks as JSON, once per chunk id, as the fact stream's
// de-duplication does; a stored chunk never changes.
func (p *replica) keep(chunks []jobs.Chunk) {
	p.chunks += len(chunks)
	for _, c := range chunks {
		js := mustJSON(p.t, c)
		m := p.facts[c.JobID]
		if m == nil {
			m = map[string]string{}
			p.facts[c.JobID] = m
		}
		if prev, ok := m[c.ID()]; ok && prev != js {
			p.t.Fatalf("chunk %s stored twice with different data:\n%s\n%s", c.ID(), prev, js)
		}
		m[c.ID()] = js
	}
}

// records builds the records of closed from the stored chunks.
func (p *replica) records(closed []jobs.Closing) []jobs.Record {
	var recs []jobs.Record
	for _, c := range closed {
		var facts []jobs.Fact
		for _, js := range p.facts[c.Job.ID] {
			var ch jobs.Chunk
			if err := json.Unmarshal([]byte(js), &ch); err != nil {
				p.t.Fatal(err)
			}
			facts = append(facts, ch.Facts...)
		}
		r, err := jobs.Build(c, facts)
		if err != nil {
			p.t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}

// forget purges the facts of closed jobs, once their state is stored.
func (p *replica) forget(closed []jobs.Closing) {
	for _, c := range closed {
		delete(p.facts, c.Job.ID)
	}
}

func (p *replica) publish(k jobs.Key, recs []jobs.Record) {
	for _, r := range recs {
		js := mustJSON(p.t, r)
		if prev, ok := p.published[r.JobID]; ok {
			if prev != js {
				p.t.Fatalf("job %s published twice with different data:\n%s\n%s", r.JobID, prev, js)
			}
			p.dups++
			continue
		}
		p.published[r.JobID] = js
		p.order[k] = append(p.order[k], r.JobID)
	}
}

func (p *replica) chance(n int) bool { return p.noise != nil && p.noise.IntN(n) == 0 }

func (p *replica) step(o jobs.Observation, store bool) {
	k := jobs.KeyOf(o, p.cfg)
	st := p.load(k)
	out, changed, err := jobs.Step(st, o, p.cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	p.keep(out.Chunks)
	p.publish(k, p.records(out.Closed))
	if changed && store {
		p.save(k, st)
		p.forget(out.Closed)
	}
}

func (p *replica) tickAll(now time.Time, mayLose bool) {
	for k := range p.kv {
		st := p.load(k)
		if closed := jobs.Tick(st, now, p.cfg); len(closed) > 0 {
			p.publish(k, p.records(closed))
			if !mayLose || !p.chance(4) {
				p.save(k, st)
				p.forget(closed)
			}
		}
	}
}

func (p *replica) run(list []jobs.Observation) {
	for i, o := range list {
		if p.chance(5) {
			p.step(o, false) // published, then the write was lost
		}
		p.step(o, true)
		for p.chance(3) {
			old := list[p.noise.IntN(i+1)]
			k := jobs.KeyOf(old, p.cfg)
			before := string(p.kv[k])
			st := p.load(k)
			out, changed, err := jobs.Step(st, old, p.cfg)
			if err != nil || changed || len(out.Chunks)+len(out.Closed) != 0 || string(p.kv[k]) != before {
				p.t.Fatalf("redelivery of %d: changed %v, %d chunks, %d closed, error %v", old.Seq, changed, len(out.Chunks), len(out.Closed), err)
			}
		}
		if p.chance(3) {
			p.tickAll(o.Time, true) // the watermark: everything up to o is applied
		}
	}
	p.tickAll(list[len(list)-1].Time.Add(24*time.Hour), false)
}

func TestRandomReplayWithRedeliveries(t *testing.T) {
	t.Parallel()
	limits := jobs.Config{MaxTasks: 4, MaxDuration: 20 * time.Minute, MaxRecordBytes: jobs.MinRecordBytes, MaxImagesPerTask: 1}
	// Large images make jobs hand their facts out in chunks every few tasks.
	bigImages := jobs.Config{MaxRecordBytes: 2 * jobs.MinRecordBytes}
	for _, cfg := range []jobs.Config{{}, {Key: jobs.KeyInvokeID}, {ClosedTaskMemory: 4}, limits, bigImages} {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("key=%s memory=%d tasks=%d bytes=%d seed=%d", cfg.Key, cfg.ClosedTaskMemory, cfg.MaxTasks, cfg.MaxRecordBytes, seed), func(t *testing.T) {
				t.Parallel()
				n := 1500
				if testing.Short() {
					n = 300
				}
				list := genObservations(rand.New(rand.NewPCG(seed, 0)), n)
				if cfg == bigImages {
					for i := range list {
						for j := range list[i].Images {
							list[i].Images[j].URL += "?" + strings.Repeat("q", 1500)
						}
					}
				}

				clean := newReplica(t, cfg, nil)
				clean.run(list)
				if clean.dups != 0 {
					t.Fatalf("a clean run published %d duplicates", clean.dups)
				}
				if cfg == bigImages && clean.chunks < 20 {
					t.Fatalf("only %d chunks of facts stored", clean.chunks)
				}
				byClose := map[string]int{}
				for _, js := range clean.published {
					var r jobs.Record
					if err := json.Unmarshal([]byte(js), &r); err != nil {
						t.Fatal(err)
					}
					byClose[string(r.ClosedBy)]++
				}
				want := []jobs.ClosedBy{jobs.ClosedByJobEvent, jobs.ClosedByIdleTimeout, jobs.ClosedByTerminalResult}
				if cfg.MaxTasks != 0 {
					want = append(want, jobs.ClosedByTaskLimit, jobs.ClosedByMaxDuration)
				}
				for _, c := range want {
					if byClose[string(c)] == 0 {
						t.Fatalf("the stream closed no job by %s: %v", c, byClose)
					}
				}

				for run := uint64(1); run <= 2; run++ {
					noisy := newReplica(t, cfg, rand.New(rand.NewPCG(seed, run)))
					noisy.run(list)
					if noisy.dups == 0 {
						t.Error("the noise produced no duplicate publication")
					}
					if len(noisy.published) != len(clean.published) {
						t.Fatalf("run %d: %d jobs, clean run %d", run, len(noisy.published), len(clean.published))
					}
					for id, js := range clean.published {
						if noisy.published[id] != js {
							t.Fatalf("run %d: job %s\n got  %s\n want %s", run, id, noisy.published[id], js)
						}
					}
					for k, ids := range clean.order {
						if !slices.Equal(noisy.order[k], ids) {
							t.Fatalf("run %d: %s jobs in another order", run, k)
						}
					}
					for k, raw := range clean.kv {
						if got := string(noisy.kv[k]); got != string(raw) {
							t.Fatalf("run %d: final state of %s differs:\n got  %s\n want %s", run, k, got, raw)
						}
					}
				}
			})
		}
	}
}

// BenchmarkStep measures Step alone (no JSON): callback task events of 1,000
// accounts, one job event in five.
func BenchmarkStep(b *testing.B) {
	states := make([]jobs.State, 1000)
	imgs := images("img")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		acct := i % len(states)
		o := jobs.Observation{
			Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Millisecond), Source: "default",
			Account: fmt.Sprintf("a_%d", acct), Kind: jobs.KindTaskFinished, InvokeID: "inv", Success: true, Images: imgs,
		}
		if (i/len(states))%5 == 4 {
			o.Kind = jobs.KindJobFinished
		}
		if _, _, err := jobs.Step(&states[acct], o, jobs.Config{MaxTasks: 1 << 30}); err != nil {
			b.Fatal(err)
		}
	}
}
