package jobs

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/sdevents/sdevents/pkg/contract"
)

// ErrFactsMissing is returned by Build when it is given fewer facts of the
// job than Step handed out for it in chunks. The record it returns alongside holds what
// the facts given hold. An adapter reading facts from a replicated store
// reads them again (a replica may lag behind); when they stay missing (the
// store lost them), it publishes the record it has.
var ErrFactsMissing = errors.New("facts of the job are missing")

// Fact is what one observation added to an open job: a task (an
// sdTaskFinished, or an SNS message of a task), or only an invokeId (an
// sdPreInvoke). An observation adds at most one. A job keeps its latest
// facts in its State (OpenJob.Inline) and hands the others out in chunks,
// which the adapter stores and gives back to Build when the job closes.
type Fact struct {
	// Seq is the INGRESS sequence of the observation.
	Seq uint64 `json:"seq"`
	// Task is the task reported; a pre-invoke's fact has no TaskID, only
	// its InvokeID ("" when it has none). For an SNS task seen running the
	// task has no outcome yet: Terminal is false.
	Task
	Terminal bool `json:"terminal,omitempty"`
}

// IsTask reports whether f reports a task (else it is a pre-invoke's).
func (f Fact) IsTask() bool { return f.TaskID != "" }

// Chunk is a run of facts of one job that Step handed out of the State, to
// be stored before the State that no longer holds them.
type Chunk struct {
	JobID string
	Facts []Fact
}

// ID identifies the chunk among every chunk of every job:
// "f-<job id>-<sequence of its first fact>". The same chunk gets the same id
// on every replica and redelivery (an adapter de-duplicates by it); two
// chunks of a job never start at the same fact.
func (c Chunk) ID() string {
	var first uint64
	if len(c.Facts) > 0 {
		first = c.Facts[0].Seq
	}
	return "f-" + c.JobID + "-" + strconv.FormatUint(first, 10)
}

// JobEvent is the sdJobFinished that closed a job.
type JobEvent struct {
	Success  bool
	InvokeID string
	// Images are the event's images, at most Config.MaxImagesPerTask and
	// within Config.MaxRecordBytes; ImagesDropped counts the others.
	Images        []Image
	ImagesDropped int
}

// Closing is a job that closed: everything its Record needs besides the
// facts handed out in chunks.
type Closing struct {
	Key Key
	// Job is the job as it was when it closed: identity, counters, the facts
	// it still held, and what a legacy State held for it.
	Job        OpenJob
	ClosedBy   ClosedBy
	FinishedAt time.Time
	// UpTo is the last INGRESS sequence applied when the job closed: no fact
	// above it belongs to the job.
	UpTo uint64
	// Event is the closing sdJobFinished, nil when something else closed the
	// job.
	Event *JobEvent
}

// Build returns the record of the job c closed from its facts: those the job
// still held and stored, the facts of the job's chunks; of those, the ones
// from the job's opening sequence up to c.UpTo, each sequence counted once,
// in sequence order, after what a legacy State held. Callback tasks are listed in
// order; an SNS task is listed where it first appeared, with its first
// terminal message (a task still running is unsuccessful). It fails with
// ErrFactsMissing, and returns the record it could build, when it has fewer
// of the job's facts than c.Job.Facts.
func Build(c Closing, stored []Fact) (Record, error) {
	j := &c.Job
	mine := make([]Fact, 0, j.Facts)
	for _, f := range slices.Concat(stored, j.Inline) {
		if f.Seq >= j.OpenSeq && f.Seq <= c.UpTo {
			mine = append(mine, f)
		}
	}
	slices.SortStableFunc(mine, func(a, b Fact) int { return cmp.Compare(a.Seq, b.Seq) })
	mine = slices.CompactFunc(mine, func(a, b Fact) bool { return a.Seq == b.Seq })
	var err error
	if len(mine) < j.Facts {
		err = fmt.Errorf("%w: job %s: %d of %d", ErrFactsMissing, j.ID, len(mine), j.Facts)
	}

	tasks := slices.Clone(j.LegacyTasks)
	invokes := slices.Clone(j.LegacyInvokeIDs)
	addInvoke := func(id string) {
		if id != "" && !slices.Contains(invokes, id) {
			invokes = append(invokes, id)
		}
	}
	at := map[string]int{} // SNS task id -> index in tasks
	if c.Key.SNS {
		for i, t := range tasks {
			at[t.TaskID] = i
		}
	}
	for _, f := range mine {
		addInvoke(f.InvokeID)
		if !f.IsTask() {
			continue
		}
		t := OpenTask{Task: f.Task, Terminal: f.Terminal}
		if !c.Key.SNS {
			tasks = append(tasks, t)
			continue
		}
		if i, ok := at[t.TaskID]; ok {
			if !tasks[i].Terminal && t.Terminal {
				tasks[i] = t
			}
			continue
		}
		at[t.TaskID] = len(tasks)
		tasks = append(tasks, t)
	}

	r := Record{JobRecord: contract.JobRecord{
		JobID:      j.ID,
		Account:    c.Key.Account,
		Source:     c.Key.Source,
		ClosedBy:   c.ClosedBy,
		Tasks:      make([]Task, 0, len(tasks)),
		Images:     []Image{},
		StartedAt:  j.StartedAt,
		FinishedAt: c.FinishedAt,
	}}
	for _, t := range tasks {
		task := t.Task
		task.Images = cloneImages(task.Images)
		r.Tasks = append(r.Tasks, task)
		if c.Event == nil {
			r.Images = append(r.Images, task.Images...)
		}
	}
	var event *bool
	if c.Event != nil {
		addInvoke(c.Event.InvokeID)
		r.Images = cloneImages(c.Event.Images)
		r.ImagesDropped = c.Event.ImagesDropped
		event = &c.Event.Success
	}
	r.Status = statusOf(r.Tasks, event)
	r.InvokeIDs = invokes
	return r, err
}

// Book keeps the facts of open jobs in memory: the fact store of a replay,
// which has no crash to survive, and of tests. The zero Book is empty; a
// Book is not safe for concurrent use.
type Book struct {
	jobs map[string]*bookJob
}

type bookJob struct {
	facts []Fact
	seen  map[uint64]bool
}

// Keep stores the facts of chunks; a fact whose job and sequence it holds
// already is ignored.
func (b *Book) Keep(chunks ...Chunk) {
	if b.jobs == nil {
		b.jobs = map[string]*bookJob{}
	}
	for _, c := range chunks {
		bj := b.jobs[c.JobID]
		if bj == nil {
			bj = &bookJob{seen: map[uint64]bool{}}
			b.jobs[c.JobID] = bj
		}
		for _, f := range c.Facts {
			if !bj.seen[f.Seq] {
				bj.seen[f.Seq] = true
				bj.facts = append(bj.facts, f)
			}
		}
	}
}

// Facts returns the facts of job id, in the order they were kept.
func (b *Book) Facts(id string) []Fact {
	if bj := b.jobs[id]; bj != nil {
		return bj.facts
	}
	return nil
}

// Forget drops the facts of job id.
func (b *Book) Forget(id string) { delete(b.jobs, id) }

// Jobs returns the number of jobs it holds facts of.
func (b *Book) Jobs() int { return len(b.jobs) }

// Step is what an adapter does with one observation, in memory: Step, keep
// the chunks, build the records of the jobs that closed and forget their
// facts. Errors are Step's.
func (b *Book) Step(st *State, obs Observation, cfg Config) ([]Record, bool, error) {
	out, changed, err := Step(st, obs, cfg)
	if err != nil {
		return nil, false, err
	}
	b.Keep(out.Chunks...)
	recs, err := b.close(out.Closed)
	return recs, changed, err
}

// Tick is Tick followed by what Step does with the closings.
func (b *Book) Tick(st *State, now time.Time, cfg Config) ([]Record, error) {
	return b.close(Tick(st, now, cfg))
}

func (b *Book) close(closed []Closing) ([]Record, error) {
	var recs []Record
	for _, c := range closed {
		r, err := Build(c, b.Facts(c.Job.ID))
		if err != nil {
			return nil, err
		}
		b.Forget(c.Job.ID)
		recs = append(recs, r)
	}
	return recs, nil
}
