// Package aggregator combines the task results in INGRESS into one record per
// job on the JOBS stream, exactly once whatever the replicas and redeliveries.
// What a job is, is decided by the pure package jobs; this package is the
// adapter around it.
//
// Boundaries:
//   - Input: the durable "aggregator" consumer of INGRESS (sdPreInvoke,
//     sdTaskFinished and sdJobFinished callbacks, SNS Notifications), shared
//     by every replica, and "aggregator-due" (idle timers that fired).
//     Messages without a job key are acknowledged and ignored.
//   - Index: per replica, a headers-only ordered consumer over INGRESS that
//     knows each message's predecessor of the same key, so a message applies
//     only after every earlier one of its key, on any replica. It reads at
//     most 262,144 messages beyond the consumer's ack floor, then pauses.
//   - Lanes: one goroutine per key with pending messages, at most
//     WithWorkers (256) at once; a lane handles its key's messages and timer
//     firings one group (at most 64 messages) at a time, with one
//     compare-and-set of the key's entry per group.
//   - State: one entry per key in AGGREGATOR_STATE (counters and at most
//     4 KiB of facts); the facts of large jobs go to AGGREGATOR_FACTS, one
//     subject per job, purged once the entry that closed the job is stored.
//     Entries are cached per replica (at most 131,072, dropped whole when
//     full); a stale one only costs a failed compare-and-set and a reload.
//   - Timers: one JetStream message schedule per key with open jobs in
//     AGGREGATOR_TIMERS, so idle timeouts fire while no replica runs; no
//     goroutine sleeps on a deadline.
//   - Output: JOBS records (contract.JobRecord) with Nats-Msg-Id = job id,
//     their credits and archive URIs read from QUOTA and ARCHIVE when the
//     job closes, never waited for. A message that keeps failing is recorded
//     on sd.dead.aggregator or sd.dead.aggregator-due (pkg/deadletter) and
//     skipped in its key's state.
//
// docs/aggregator.md holds the ordering and exactly-once arguments.
package aggregator
