// Package archiver copies every image named by a task result in INGRESS into
// the operator's own store (MinIO/S3 or a local directory) before its URL
// expires, and records each outcome in the ARCHIVE stream: exactly one
// sd.archive.stored.<account> or sd.archive.failed.<account> event per image,
// whatever the redeliveries, replicas and crashes.
//
// Boundaries:
//   - Input: the durable "archiver" consumer of INGRESS (sdTaskFinished and
//     sdJobFinished callbacks, SNS Notifications), shared by every replica,
//     with "archiver-due" (retries that fell due) and "archiver-retry"
//     (operators' retry requests). A replica holds a bounded number of
//     messages; their images are queued per account and run by
//     archive.workers workers round-robin across accounts, at most half of
//     them on one source host (dispatcher).
//   - Limits: at most archive.max_images_per_task distinct images per task
//     result (the rest are recorded in one sd.archive.dropped event), one
//     fetch per address, and every fetch bounded by archive.fetch_timeout
//     and archive.min_rate.
//   - Sources: http(s) URLs through fetch.HTTPSource (SSRF guard,
//     archive.allow_hosts), s3:// URIs through fetch.S3Source
//     (archive.source_s3). Bytes stream from the source through
//     fetch.InspectImage into the BlobStore: no image is held in memory.
//   - Sink: a BlobStore, declared here and handed to New (a process opens
//     its sink once, package sink); dirstore and s3store implement it.
//   - Output: ARCHIVE events, made exactly-once by the ARCHIVE_KEYS bucket
//     (see outcomes) and Nats-Msg-Id. Failed events carry a generic reason;
//     the details go to the log.
//   - Retries: a transient failure is handed to a JetStream message schedule
//     in ARCHIVER_TIMERS (timers.go) and the message it came from is
//     acknowledged, so the consumers' windows hold only work in progress;
//     no worker sleeps, so a crash loses nothing. A message that exhausts
//     its consumer's max_deliver, or cannot be processed at all, is a dead
//     letter: recorded on sd.dead.<consumer> (pkg/deadletter) and
//     terminated, never dropped silently. An image that fails for good is
//     no dead letter: its outcome is a failed event.
//
// The object keys, metadata and the exactly-once argument are in
// docs/archiver.md.
package archiver
