// Package archiver copies every image named by a task result in INGRESS into
// the operator's own store (MinIO/S3 or a local directory) before its URL
// expires, and records each outcome in the ARCHIVE stream: exactly one
// sd.archive.stored.<account> or sd.archive.failed.<account> event per image,
// whatever the redeliveries, replicas and crashes.
//
// Boundaries:
//   - Input: the durable "archiver" consumer of INGRESS (sdTaskFinished and
//     sdJobFinished callbacks, SNS Notifications), shared by every replica;
//     up to archive.workers messages are worked on at a time per replica.
//   - Sources: http(s) URLs through fetch.HTTPSource (SSRF guard,
//     archive.allow_hosts), s3:// URIs through fetch.S3Source
//     (archive.source_s3). Bytes stream from the source through
//     fetch.InspectImage into the BlobStore: no image is held in memory.
//   - Sink: a BlobStore, declared here; dirstore and s3store implement it.
//   - Output: ARCHIVE events, made exactly-once by the ARCHIVE_KEYS bucket
//     (see ledger) and Nats-Msg-Id.
//   - Retries: transient failures are redelivered by JetStream
//     (NakWithDelay, exponential backoff) until the source's lifetime ends;
//     no worker sleeps, so a crash loses nothing.
//
// The object keys, metadata and the exactly-once argument are in
// docs/archiver.md.
package archiver
