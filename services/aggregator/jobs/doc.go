// Package jobs is the aggregator's domain: it groups the platform's per-task
// results into jobs and produces one Record (the data of a JOBS event,
// CONTRACT §6) per finished job.
//
// It is pure: no I/O, no clock, no logging. The adapter turns each INGRESS
// message into an Observation, loads the State of the observation's Key,
// calls Step, stores the Facts it returns, builds the Record of every job it
// closed (Build, from the job's facts), publishes them and stores the State
// back (compare-and-set). For keys that receive no further observations it
// calls Tick when Deadline has passed. Every function is deterministic: the
// same observations in the same order give the same facts and records, byte
// for byte, on every replica and on every replay (a replay keeps the facts
// in a Book).
//
// # Facts
//
// What an observation adds to a job (a task, or a pre-invoke's invokeId) is a
// Fact. A job keeps its latest facts in its State, at most InlineBytes of
// them; beyond that Step hands them out as one Chunk, which the adapter
// stores outside the State. So a State never holds more than its counters
// and InlineBytes of facts whatever its jobs hold, and Build puts a job's
// record together when it closes, from the facts it still held and those of
// its chunks. The adapter must store a chunk before the State that no longer
// holds it, may store one twice (Build counts each sequence once), and may
// drop a job's chunks once the State that closed the job is stored.
//
// # What a job is
//
// Callback sources (seed 002) are keyed by (source, account) by default, or by
// (source, account, invokeId) when Config.Key is KeyInvokeID. Under a key at
// most one job is open at a time:
//
//   - sdPreInvoke or sdTaskFinished opens a job when none is open; while one is
//     open they join it (a task is added; a pre-invoke only records its invokeId).
//   - sdJobFinished closes the open job (ClosedByJobEvent). With no job open it
//     is an empty job on its own, opened and closed by that event.
//   - A job with no activity for Config.IdleTimeout closes (ClosedByIdleTimeout)
//     at last activity + IdleTimeout. That instant is the record's finished_at,
//     whoever notices it (Tick, or the next observation of the key), so the
//     record does not depend on when the timeout was noticed.
//   - An sdTaskFinished after its job closed (the job event overtook it, or the
//     job timed out) opens a new job, as the contract's keying implies.
//
// Every job is bounded (Config): it closes when it holds MaxTasks tasks
// (ClosedByTaskLimit; pre-invokes count half), MaxDuration after it opened
// (ClosedByMaxDuration, at that instant, like an idle timeout), or when its
// next task would take its record beyond MaxRecordBytes (ClosedBySizeLimit,
// the task opening the next job). A task keeps its first MaxImagesPerTask
// images, and a task or job event that alone would not fit keeps those that
// do; the others are counted in ImagesDropped.
//
// SNS sources (seeds 000/001) are keyed by (source, account); the State of
// that key holds every open SNS job of the account:
//
//   - A task without context.job_id is a job of its own, opened and closed by
//     its first terminal message (ClosedByTerminalResult). A "running" message
//     for such a task opens nothing and is ignored: a job only exists once it
//     has an outcome, so a long-running task is never reported as failed.
//   - Tasks sharing a context.job_id form one job, opened by the first message
//     of any of its tasks (running or terminal) and closed by idle timeout only.
//     Per task the first terminal message wins over running and over later
//     terminal messages; a task still running when the job closes counts as
//     unsuccessful.
//   - Messages for a task of a closed job are ignored. The State remembers the
//     last Config.ClosedTaskMemory closed task ids of its key (default 1024,
//     oldest forgotten first); a message for a forgotten task would open a new
//     job, which for SNS retries (minutes) and a per-account key is far beyond
//     any realistic reordering.
//
// # Outcome
//
// A job's status is computed from its tasks: StatusSucceeded when every task
// succeeded, StatusFailed when none did, StatusPartial otherwise. A job without
// tasks takes the outcome of its sdJobFinished (success → succeeded, else
// failed); without tasks and without a job event (a pre-invoke that timed out)
// it failed. The sdJobFinished's own images, possibly a plugin's
// post-processing, are the record's top-level images; a job closed any other
// way has the concatenation of its tasks' images there. Tasks keep their own
// images. Credits and archive URIs are left empty: the adapter fills them from
// the QUOTA and ARCHIVE streams.
//
// # Identity and redelivery
//
// A job's id is "j_" + lowercase unpadded base32(SHA-256(key, group, sequence
// of the opening observation))[:26] (see JobID): the same on every replica and
// replay, different for every job. Each State keeps the highest INGRESS
// sequence it applied; an observation at or below it is a redelivery and a
// no-op. A State must therefore never be deleted while its observations may
// still be redelivered, even when it has no open job.
package jobs
