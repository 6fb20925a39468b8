package jobs

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// ErrInvalidObservation is returned by Step for an observation that can never
// be applied (no sequence, time, source or account, an unknown kind, an SNS
// result without task id or with an unknown status). Retrying cannot help:
// the adapter logs it and acknowledges the message. The State is unchanged.
var ErrInvalidObservation = errors.New("invalid observation")

// ErrKeyMismatch is returned by Step when the observation's Key is not the
// State's: the adapter loaded the wrong State, a bug. The State is unchanged.
var ErrKeyMismatch = errors.New("observation does not belong to this state")

// State is everything the aggregator knows about one Key: its open jobs and
// the bookkeeping that makes Step idempotent. The zero State is the state of
// a key that has seen nothing. It round-trips through encoding/json without
// changing behaviour; the adapter stores one per Key (Key.Token) and treats
// the fields as opaque.
//
// A State holds counters and a small buffer of facts, not the tasks of its
// jobs: what an observation adds to a job is a Fact, kept in the job's
// buffer (Inline) until the buffer exceeds InlineBytes, when Step hands the
// buffer to the adapter as a Chunk to store elsewhere. A callback State
// stays within InlineBytes and a few hundred bytes whatever its job holds;
// an SNS State also holds a short reference per task of its grouped jobs (at
// most Config.MaxTasks per job) and of its last closed tasks, and Step
// closes its oldest jobs (ClosedBySizeLimit) rather than let it grow beyond
// 256 KiB.
type State struct {
	Key Key `json:"key"`
	// LastSeq is the highest INGRESS sequence applied; observations at or
	// below it are redeliveries.
	LastSeq uint64 `json:"last_seq"`
	// Open are the open jobs, in the order they opened. A callback key has at
	// most one; an SNS key one per open task or context.job_id.
	Open []*OpenJob `json:"open,omitempty"`
	// ClosedTasks are references (TaskRef) to the last tasks of closed SNS
	// jobs, oldest first, at most Config.ClosedTaskMemory.
	ClosedTasks []string `json:"closed_tasks,omitempty"`
}

// OpenJob is a job that has not closed yet: its identity, deadlines,
// counters, and the facts not yet handed out in a Chunk.
type OpenJob struct {
	ID string `json:"id"`
	// Group is empty for callback jobs, "task:<id>" or "job:<context.job_id>"
	// for SNS jobs.
	Group     string    `json:"group,omitempty"`
	OpenSeq   uint64    `json:"open_seq"`
	StartedAt time.Time `json:"started_at"`
	// Deadline is the last activity plus the idle timeout in force then.
	// The job also ends at StartedAt + Config.MaxDuration.
	Deadline time.Time `json:"deadline"`
	// Facts is the number of facts of the job: in Inline, and in the chunks
	// Step returned for it.
	Facts int `json:"facts,omitempty"`
	// Inline are the job's latest facts, InlineBytes their size bound; Step
	// hands them out as a Chunk when they exceed InlineBytes.
	Inline      []Fact `json:"inline,omitempty"`
	InlineBytes int    `json:"inline_bytes,omitempty"`
	// TaskCount is the number of distinct tasks the job holds.
	TaskCount int `json:"task_count,omitempty"`
	// Bytes bounds the size of the job's record so far (size.go).
	Bytes int `json:"bytes,omitempty"`
	// Members are the tasks of an SNS job, in the order they joined.
	Members []Member `json:"members,omitempty"`

	// LegacyInvokeIDs and LegacyTasks are what a State written before jobs
	// kept their tasks in facts holds for the job. They are read, never
	// added to: Build puts them before the job's facts.
	LegacyInvokeIDs []string   `json:"invoke_ids,omitempty"`
	LegacyTasks     []OpenTask `json:"tasks,omitempty"`
}

// Member is one task of an SNS job.
type Member struct {
	// Ref is TaskRef of the task id.
	Ref string `json:"ref"`
	// Terminal is true once a terminal message of the task was applied.
	Terminal bool `json:"terminal,omitempty"`
}

// OpenTask is a task of an open job as a legacy State stores it, and as
// Build assembles it.
type OpenTask struct {
	Task
	// Terminal is false for an SNS task seen only as running.
	Terminal bool `json:"terminal,omitempty"`
}

// maxStateBytes bounds the encoded size of a State; beyond it Step closes the
// key's oldest jobs (ClosedBySizeLimit).
const maxStateBytes = 256 << 10

// maxRefLen is the longest task id a State keeps as is (TaskRef).
const maxRefLen = 64

// TaskRef is how a State refers to an SNS task id: the id itself when it is
// at most 64 bytes, else "=" and a digest of it, so that a State's size does
// not depend on the length of ids.
func TaskRef(id string) string {
	if len(id) <= maxRefLen {
		return id
	}
	return "=" + digest("task", id)
}

// InlineBytes bounds the facts an open job keeps in its State (by the size
// bound of their encoding); beyond it they are handed out in a Chunk.
const InlineBytes = 4 << 10

// Output is what Step adds: the chunks of facts to store before the State
// (at most one), and the jobs that closed, in the order they closed, whose
// records must be published before the State is stored.
type Output struct {
	Chunks []Chunk
	Closed []Closing
}

// Step applies obs to st, the State of KeyOf(obs, cfg), and returns what it
// added: first every open job whose deadline (idle timeout or maximum
// duration) is not after obs.Time closes (so the records do not depend on
// whether Tick ran before), then obs is applied, possibly closing jobs
// (job event, terminal result, task limit, size limit). changed reports
// whether st was modified and must be stored; it is false for a redelivery
// (obs.Seq <= st.LastSeq), which adds nothing.
//
// The adapter stores the output's chunks (idempotently, by Chunk.ID), builds
// the closed jobs' records (Build) and publishes them, and only then stores
// st: if storing fails, the redelivered observation yields the same chunks,
// the same closings and the same records. Errors wrap
// ErrInvalidConfig, ErrInvalidObservation or ErrKeyMismatch, and leave st
// unchanged.
func Step(st *State, obs Observation, cfg Config) (out Output, changed bool, err error) {
	if err := cfg.Validate(); err != nil {
		return out, false, err
	}
	cfg = cfg.withDefaults()
	if err := obs.validate(); err != nil {
		return out, false, err
	}
	k := KeyOf(obs, cfg)
	if st.LastSeq != 0 && st.Key != k {
		return out, false, fmt.Errorf("%w: state %s, observation %d for %s", ErrKeyMismatch, st.Key, obs.Seq, k)
	}
	if obs.Seq <= st.LastSeq {
		return out, false, nil
	}
	st.Key = k
	st.LastSeq = obs.Seq
	st.migrate()
	at := obs.Time.UTC()
	out.Closed = st.expire(at, cfg)
	if obs.Kind == KindSNSResult {
		st.applySNS(&out, obs, at, cfg)
	} else {
		st.applyCallback(&out, obs, at, cfg)
	}
	st.bound(&out, at, cfg)
	return out, true, nil
}

// Tick closes, by idle timeout or maximum duration, every open job of st
// whose deadline is not after now, and returns them (none when nothing was
// due: st is then unchanged and need not be stored). The closings are the
// same as if the next observation of the key had closed them.
//
// now is a watermark, not necessarily the wall clock: no observation of st's
// key with a Time before now may still be unapplied, or a job could time out
// before a task that arrived in time. An adapter passes the Time of the last
// INGRESS message it consumed, or the current time when it has consumed
// everything. Tick ignores cfg.Key.
func Tick(st *State, now time.Time, cfg Config) []Closing {
	st.migrate()
	return st.expire(now.UTC(), cfg.withDefaults())
}

// Skip records that the INGRESS message at seq belongs to key k but takes no
// part in a job (its body could not be read as an observation, or the
// adapter gave up on it): like a redelivery, an observation at or below seq
// is ignored afterwards. It reports whether st changed; it is false, and st
// unchanged, when seq is at or below st.LastSeq. An adapter that applies a
// key's messages in order, each once its predecessor is applied, must Skip
// such messages rather than drop them, or their successors would wait
// forever. Errors wrap ErrInvalidObservation (seq 0) or ErrKeyMismatch.
func Skip(st *State, k Key, seq uint64) (bool, error) {
	if seq == 0 {
		return false, fmt.Errorf("%w: no sequence", ErrInvalidObservation)
	}
	if st.LastSeq != 0 && st.Key != k {
		return false, fmt.Errorf("%w: state %s, skipped %d for %s", ErrKeyMismatch, st.Key, seq, k)
	}
	if seq <= st.LastSeq {
		return false, nil
	}
	st.Key, st.LastSeq = k, seq
	return true, nil
}

// Deadline returns the earliest deadline of st's open jobs under cfg (idle
// timeout or maximum duration), the time at which the adapter should call
// Tick, and false when no job is open.
func Deadline(st *State, cfg Config) (time.Time, bool) {
	cfg = cfg.withDefaults()
	var d time.Time
	for _, j := range st.Open {
		if e, _ := j.end(cfg); d.IsZero() || e.Before(d) {
			d = e
		}
	}
	return d, !d.IsZero()
}

func (o Observation) validate() error {
	bad := func(what string) error {
		return fmt.Errorf("%w: seq %d: %s", ErrInvalidObservation, o.Seq, what)
	}
	switch {
	case o.Seq == 0:
		return bad("no sequence")
	case o.Time.IsZero():
		return bad("no time")
	case o.Source == "":
		return bad("no source")
	case o.Account == "":
		return bad("no account")
	}
	switch o.Kind {
	case KindPreInvoke, KindTaskFinished, KindJobFinished:
	case KindSNSResult:
		if o.TaskID == "" {
			return bad("sns result without task id")
		}
		switch o.Status {
		case TaskLegacy, TaskRunning, TaskCompleted, TaskFailed:
		default:
			return bad(fmt.Sprintf("unknown sns status %q", o.Status))
		}
	default:
		return bad(fmt.Sprintf("unknown kind %q", o.Kind))
	}
	return nil
}

// end returns when j closes without further activity, and why: its idle
// deadline, or its maximum duration when that comes first.
func (j *OpenJob) end(cfg Config) (time.Time, ClosedBy) {
	if hard := j.StartedAt.Add(cfg.MaxDuration); hard.Before(j.Deadline) {
		return hard, ClosedByMaxDuration
	}
	return j.Deadline, ClosedByIdleTimeout
}

// expire closes the jobs whose end is not after now, in the order of their
// ends.
func (st *State) expire(now time.Time, cfg Config) []Closing {
	type due struct {
		j  *OpenJob
		at time.Time
		by ClosedBy
	}
	var dues []due
	for _, j := range st.Open {
		if at, by := j.end(cfg); !now.Before(at) {
			dues = append(dues, due{j, at, by})
		}
	}
	slices.SortStableFunc(dues, func(a, b due) int { return a.at.Compare(b.at) })
	var out []Closing
	for _, d := range dues {
		out = append(out, st.close(d.j, d.by, d.at, nil, cfg))
	}
	return out
}

// full reports whether j may take no further observation.
func (j *OpenJob) full(cfg Config) bool {
	return j.TaskCount >= cfg.MaxTasks || j.Facts >= 2*cfg.MaxTasks
}

func (st *State) applyCallback(out *Output, obs Observation, at time.Time, cfg Config) {
	j := st.find("")
	if j != nil && j.full(cfg) {
		// Only a job stored before the limit applied, or under a larger one.
		out.Closed = append(out.Closed, st.close(j, ClosedByTaskLimit, at, nil, cfg))
		j = nil
	}
	switch obs.Kind {
	case KindJobFinished:
		if j == nil {
			j = st.open("", obs, at)
		}
		ev := &JobEvent{Success: obs.Success, InvokeID: obs.InvokeID}
		var capped, unfit int
		ev.Images, capped = capImages(obs.Images, cfg.MaxImagesPerTask)
		ev.Images, unfit = fitImages(ev.Images, cfg.MaxRecordBytes-j.Bytes)
		ev.ImagesDropped = capped + unfit
		out.Closed = append(out.Closed, st.close(j, ClosedByJobEvent, at, ev, cfg))
		return
	case KindTaskFinished:
		id := obs.TaskID
		if id == "" {
			id = strconv.FormatUint(obs.Seq, 10)
		}
		t := Task{TaskID: id, InvokeID: obs.InvokeID, Success: obs.Success}
		t.Images, t.ImagesDropped = capImages(obs.Images, cfg.MaxImagesPerTask)
		if j != nil && j.TaskCount > 0 && j.Bytes+taskBytes(t) > cfg.MaxRecordBytes {
			out.Closed = append(out.Closed, st.close(j, ClosedBySizeLimit, at, nil, cfg))
			j = nil
		}
		if j == nil {
			j = st.open("", obs, at)
		}
		n := fitTask(&t, cfg.MaxRecordBytes-j.Bytes)
		j.TaskCount++
		j.add(out, Fact{Seq: obs.Seq, Task: t, Terminal: true}, n)
	default: // KindPreInvoke
		if j == nil {
			j = st.open("", obs, at)
		}
		j.add(out, Fact{Seq: obs.Seq, Task: Task{InvokeID: obs.InvokeID}}, 0)
	}
	j.touch(at, cfg.IdleTimeout)
	if j.full(cfg) {
		out.Closed = append(out.Closed, st.close(j, ClosedByTaskLimit, at, nil, cfg))
	}
}

func (st *State) applySNS(out *Output, obs Observation, at time.Time, cfg Config) {
	ref := TaskRef(obs.TaskID)
	if st.isClosed(ref, obs.TaskID) {
		return // a repeat or late message of a closed job's task
	}
	group := "task:" + obs.TaskID
	if obs.JobID != "" {
		group = "job:" + obs.JobID
	}
	j := st.find(group)
	if j != nil && j.full(cfg) && j.member(ref) < 0 {
		out.Closed = append(out.Closed, st.close(j, ClosedByTaskLimit, at, nil, cfg))
		j = nil
	}
	if j == nil {
		if obs.JobID == "" && !obs.terminal() {
			return // a standalone task's job starts with its outcome
		}
		j = st.open(group, obs, at)
	}
	i := j.member(ref)
	switch {
	case i >= 0 && j.Members[i].Terminal:
		return // the first terminal message won
	case i >= 0 && !obs.terminal():
		j.touch(at, cfg.IdleTimeout) // still running
		return
	}
	t := Task{TaskID: obs.TaskID, Images: []Image{}}
	if obs.terminal() {
		t.Success = obs.snsSuccess()
		t.Images, t.ImagesDropped = capImages(obs.Images, cfg.MaxImagesPerTask)
	}
	if j.TaskCount > 0 && j.Bytes+taskBytes(t) > cfg.MaxRecordBytes {
		out.Closed = append(out.Closed, st.close(j, ClosedBySizeLimit, at, nil, cfg))
		if i >= 0 {
			return // the task closed with its job, still running
		}
		j = st.open(group, obs, at)
	}
	n := fitTask(&t, cfg.MaxRecordBytes-j.Bytes)
	j.touch(at, cfg.IdleTimeout)
	if i < 0 {
		j.Members = append(j.Members, Member{Ref: ref})
		j.TaskCount++
		i = len(j.Members) - 1
	}
	j.Members[i].Terminal = obs.terminal()
	j.add(out, Fact{Seq: obs.Seq, Task: t, Terminal: obs.terminal()}, n)
	switch {
	case obs.terminal() && obs.JobID == "":
		out.Closed = append(out.Closed, st.close(j, ClosedByTerminalResult, at, nil, cfg))
	case j.full(cfg):
		out.Closed = append(out.Closed, st.close(j, ClosedByTaskLimit, at, nil, cfg))
	}
}

func (st *State) find(group string) *OpenJob {
	for _, j := range st.Open {
		if j.Group == group {
			return j
		}
	}
	return nil
}

func (st *State) open(group string, obs Observation, at time.Time) *OpenJob {
	j := &OpenJob{ID: JobID(st.Key, group, obs.Seq), Group: group, OpenSeq: obs.Seq, StartedAt: at,
		Deadline: at, Bytes: recordBytes(st.Key)}
	st.Open = append(st.Open, j)
	return j
}

// add keeps f, which adds n bytes to the job's record, in the job's buffer,
// and hands the buffer out in a chunk when it exceeds InlineBytes.
func (j *OpenJob) add(out *Output, f Fact, n int) {
	j.Facts++
	j.Bytes += n
	j.Inline = append(j.Inline, f)
	if j.InlineBytes += factBytes(f); j.InlineBytes > InlineBytes {
		out.Chunks = append(out.Chunks, Chunk{JobID: j.ID, Facts: j.Inline})
		j.Inline, j.InlineBytes = nil, 0
	}
}

func (j *OpenJob) member(ref string) int {
	return slices.IndexFunc(j.Members, func(m Member) bool { return m.Ref == ref })
}

// touch records activity at t: the deadline moves to t + idle, never back.
func (j *OpenJob) touch(t time.Time, idle time.Duration) {
	if d := t.Add(idle); d.After(j.Deadline) {
		j.Deadline = d
	}
}

// close removes j from st and returns its closing. ev is the closing
// sdJobFinished, nil otherwise.
func (st *State) close(j *OpenJob, by ClosedBy, at time.Time, ev *JobEvent, cfg Config) Closing {
	st.Open = slices.DeleteFunc(st.Open, func(o *OpenJob) bool { return o == j })
	if len(st.Open) == 0 {
		st.Open = nil
	}
	if st.Key.SNS {
		for _, m := range j.Members {
			st.rememberClosed(m.Ref, cfg.ClosedTaskMemory)
		}
	}
	return Closing{Key: st.Key, Job: *j, ClosedBy: by, FinishedAt: at, UpTo: st.LastSeq, Event: ev}
}

// isClosed reports whether the SNS task id, of reference ref, is among the
// closed tasks (which a legacy State may hold as plain ids).
func (st *State) isClosed(ref, id string) bool {
	return slices.Contains(st.ClosedTasks, ref) || ref != id && slices.Contains(st.ClosedTasks, id)
}

// rememberClosed adds a closed SNS task reference, forgetting the oldest
// beyond max.
func (st *State) rememberClosed(ref string, max int) {
	if slices.Contains(st.ClosedTasks, ref) {
		return
	}
	st.ClosedTasks = append(st.ClosedTasks, ref)
	if n := len(st.ClosedTasks) - max; n > 0 {
		st.ClosedTasks = slices.Delete(st.ClosedTasks, 0, n)
	}
}

// migrate fills the counters of the jobs a legacy State holds (Bytes is
// never zero for a job opened since): their tasks, size and SNS members.
func (st *State) migrate() {
	for _, j := range st.Open {
		if j.Bytes != 0 {
			continue
		}
		j.Bytes = recordBytes(st.Key)
		j.TaskCount = len(j.LegacyTasks)
		for _, t := range j.LegacyTasks {
			j.Bytes += taskBytes(t.Task)
			if st.Key.SNS {
				j.Members = append(j.Members, Member{Ref: TaskRef(t.TaskID), Terminal: t.Terminal})
			}
		}
	}
}

// bound closes st's oldest jobs, by size limit, while st would encode to
// more than maxStateBytes.
func (st *State) bound(out *Output, at time.Time, cfg Config) {
	for len(st.Open) > 0 && st.size() > maxStateBytes {
		out.Closed = append(out.Closed, st.close(st.Open[0], ClosedBySizeLimit, at, nil, cfg))
	}
}

// size bounds the encoded size of st.
func (st *State) size() int {
	n := 256 + jsonLen(st.Key.Source) + jsonLen(st.Key.Account) + jsonLen(st.Key.InvokeID)
	for _, ref := range st.ClosedTasks {
		n += jsonLen(ref) + 1
	}
	for _, j := range st.Open {
		n += 384 + jsonLen(j.Group) + j.InlineBytes
		for _, m := range j.Members {
			n += 32 + jsonLen(m.Ref)
		}
		for _, id := range j.LegacyInvokeIDs {
			n += jsonLen(id) + 1
		}
		for _, t := range j.LegacyTasks {
			n += taskBytes(t.Task) + 16
		}
	}
	return n
}
