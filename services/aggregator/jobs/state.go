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
type State struct {
	Key Key `json:"key"`
	// LastSeq is the highest INGRESS sequence applied; observations at or
	// below it are redeliveries.
	LastSeq uint64 `json:"last_seq"`
	// Open are the open jobs, in the order they opened. A callback key has at
	// most one; an SNS key one per open task or context.job_id.
	Open []*OpenJob `json:"open,omitempty"`
	// ClosedTasks are the ids of the last tasks of closed SNS jobs, oldest
	// first, at most Config.ClosedTaskMemory.
	ClosedTasks []string `json:"closed_tasks,omitempty"`
}

// OpenJob is a job that has not closed yet.
type OpenJob struct {
	ID string `json:"id"`
	// Group is empty for callback jobs, "task:<id>" or "job:<context.job_id>"
	// for SNS jobs.
	Group     string    `json:"group,omitempty"`
	OpenSeq   uint64    `json:"open_seq"`
	StartedAt time.Time `json:"started_at"`
	// Deadline is the last activity plus the idle timeout in force then.
	Deadline  time.Time  `json:"deadline"`
	InvokeIDs []string   `json:"invoke_ids,omitempty"`
	Tasks     []OpenTask `json:"tasks,omitempty"`
}

// OpenTask is a task of an open job.
type OpenTask struct {
	Task
	// Terminal is false for an SNS task seen only as running.
	Terminal bool `json:"terminal,omitempty"`
}

// Step applies obs to st, the State of KeyOf(obs, cfg), and returns the jobs
// that closed, in the order they closed. First every open job whose deadline
// is not after obs.Time closes by idle timeout (so the records do not depend on
// whether Tick ran before), then obs is applied. changed reports whether st
// was modified and must be stored; it is false for a redelivery (obs.Seq <=
// st.LastSeq), which returns no records. The records must be published before
// st is stored: if storing fails, the redelivered observation yields the same
// records with the same job ids. Errors wrap ErrInvalidConfig,
// ErrInvalidObservation or ErrKeyMismatch, and leave st unchanged.
func Step(st *State, obs Observation, cfg Config) (closed []Record, changed bool, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, false, err
	}
	cfg = cfg.withDefaults()
	if err := obs.validate(); err != nil {
		return nil, false, err
	}
	k := KeyOf(obs, cfg)
	if st.LastSeq != 0 && st.Key != k {
		return nil, false, fmt.Errorf("%w: state %s, observation %d for %s", ErrKeyMismatch, st.Key, obs.Seq, k)
	}
	if obs.Seq <= st.LastSeq {
		return nil, false, nil
	}
	st.Key = k
	st.LastSeq = obs.Seq
	at := obs.Time.UTC()
	closed = st.expire(at, cfg)
	if obs.Kind == KindSNSResult {
		closed = append(closed, st.applySNS(obs, at, cfg)...)
	} else {
		closed = append(closed, st.applyCallback(obs, at, cfg)...)
	}
	return closed, true, nil
}

// Tick closes, by idle timeout, every open job of st whose deadline is not
// after now, and returns their records (none when nothing was due: st is
// then unchanged and need not be stored). The records are the same as if the
// next observation of the key had closed them.
//
// now is a watermark, not necessarily the wall clock: no observation of st's
// key with a Time before now may still be unapplied, or a job could time out
// before a task that arrived in time. An adapter passes the Time of the last
// INGRESS message it consumed, or the current time when it has consumed
// everything. Tick ignores cfg.Key.
func Tick(st *State, now time.Time, cfg Config) []Record {
	return st.expire(now.UTC(), cfg.withDefaults())
}

// Skip records that the INGRESS message at seq belongs to key k but takes no
// part in a job (its body could not be read as an observation): like a
// redelivery, an observation at or below seq is ignored afterwards. It
// reports whether st changed; it is false, and st unchanged, when seq is at
// or below st.LastSeq. An adapter that applies a key's messages in order,
// each once its predecessor is applied, must Skip such messages rather than
// drop them, or their successors would wait forever. Errors wrap
// ErrInvalidObservation (seq 0) or ErrKeyMismatch.
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

// Deadline returns the earliest deadline of st's open jobs, the time at
// which the adapter should call Tick, and false when no job is open.
func Deadline(st *State) (time.Time, bool) {
	var d time.Time
	for _, j := range st.Open {
		if d.IsZero() || j.Deadline.Before(d) {
			d = j.Deadline
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

// expire closes the jobs whose deadline is not after now, in deadline order.
func (st *State) expire(now time.Time, cfg Config) []Record {
	var due []*OpenJob
	for _, j := range st.Open {
		if !now.Before(j.Deadline) {
			due = append(due, j)
		}
	}
	slices.SortStableFunc(due, func(a, b *OpenJob) int { return a.Deadline.Compare(b.Deadline) })
	var out []Record
	for _, j := range due {
		out = append(out, st.close(j, ClosedByIdleTimeout, j.Deadline, nil, nil, cfg))
	}
	return out
}

func (st *State) applyCallback(obs Observation, at time.Time, cfg Config) []Record {
	j := st.find("")
	if j == nil {
		j = st.open("", obs, at)
	}
	j.touch(at, cfg.IdleTimeout)
	j.addInvoke(obs.InvokeID)
	switch obs.Kind {
	case KindTaskFinished:
		id := obs.TaskID
		if id == "" {
			id = strconv.FormatUint(obs.Seq, 10)
		}
		j.Tasks = append(j.Tasks, OpenTask{Terminal: true, Task: Task{
			TaskID: id, InvokeID: obs.InvokeID, Success: obs.Success, Images: cloneImages(obs.Images),
		}})
	case KindJobFinished:
		ok := obs.Success
		return []Record{st.close(j, ClosedByJobEvent, at, &ok, obs.Images, cfg)}
	}
	return nil
}

func (st *State) applySNS(obs Observation, at time.Time, cfg Config) []Record {
	if slices.Contains(st.ClosedTasks, obs.TaskID) {
		return nil // a repeat or late message of a closed job's task
	}
	group := "task:" + obs.TaskID
	if obs.JobID != "" {
		group = "job:" + obs.JobID
	}
	j := st.find(group)
	if j == nil {
		if obs.JobID == "" && !obs.terminal() {
			return nil // a standalone task's job starts with its outcome
		}
		j = st.open(group, obs, at)
	}
	i := slices.IndexFunc(j.Tasks, func(t OpenTask) bool { return t.TaskID == obs.TaskID })
	if i >= 0 && j.Tasks[i].Terminal {
		return nil // the first terminal message won
	}
	j.touch(at, cfg.IdleTimeout)
	if i < 0 {
		j.Tasks = append(j.Tasks, OpenTask{Task: Task{TaskID: obs.TaskID, Images: []Image{}}})
		i = len(j.Tasks) - 1
	}
	if !obs.terminal() {
		return nil
	}
	t := &j.Tasks[i]
	t.Terminal, t.Success, t.Images = true, obs.snsSuccess(), cloneImages(obs.Images)
	if obs.JobID != "" {
		return nil // a context.job_id job closes by idle timeout only
	}
	return []Record{st.close(j, ClosedByTerminalResult, at, nil, nil, cfg)}
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
	j := &OpenJob{ID: JobID(st.Key, group, obs.Seq), Group: group, OpenSeq: obs.Seq, StartedAt: at}
	st.Open = append(st.Open, j)
	return j
}

// touch records activity at t: the deadline moves to t + idle, never back.
func (j *OpenJob) touch(t time.Time, idle time.Duration) {
	if d := t.Add(idle); d.After(j.Deadline) {
		j.Deadline = d
	}
}

func (j *OpenJob) addInvoke(id string) {
	if id != "" && !slices.Contains(j.InvokeIDs, id) {
		j.InvokeIDs = append(j.InvokeIDs, id)
	}
}

// close removes j from st and returns its record. event is the closing
// sdJobFinished's success and images, nil otherwise.
func (st *State) close(j *OpenJob, by ClosedBy, at time.Time, event *bool, eventImages []Image, cfg Config) Record {
	st.Open = slices.DeleteFunc(st.Open, func(o *OpenJob) bool { return o == j })
	if len(st.Open) == 0 {
		st.Open = nil
	}
	r := Record{
		JobID:      j.ID,
		Account:    st.Key.Account,
		Source:     st.Key.Source,
		ClosedBy:   by,
		Tasks:      make([]Task, 0, len(j.Tasks)),
		Images:     []Image{},
		StartedAt:  j.StartedAt,
		FinishedAt: at,
		InvokeIDs:  slices.Clone(j.InvokeIDs),
	}
	for _, t := range j.Tasks {
		task := t.Task
		task.Images = cloneImages(task.Images)
		r.Tasks = append(r.Tasks, task)
		if event == nil {
			r.Images = append(r.Images, task.Images...)
		}
		if st.Key.SNS {
			st.rememberClosed(task.TaskID, cfg.ClosedTaskMemory)
		}
	}
	if event != nil {
		r.Images = cloneImages(eventImages)
	}
	r.Status = statusOf(r.Tasks, event)
	return r
}

// rememberClosed adds a closed SNS task id, forgetting the oldest beyond max.
func (st *State) rememberClosed(id string, max int) {
	if slices.Contains(st.ClosedTasks, id) {
		return
	}
	st.ClosedTasks = append(st.ClosedTasks, id)
	if n := len(st.ClosedTasks) - max; n > 0 {
		st.ClosedTasks = slices.Delete(st.ClosedTasks, 0, n)
	}
}
