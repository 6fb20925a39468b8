// Package simulator plays the two platforms sdevents listens to, as their
// documents describe them (CONTRACT §4 and §5, seeds 000–002), and checks the
// end state of a deployment afterwards.
//
//   - Callbacks (seed 002): simulated users with tokens run image-generation
//     jobs: sdImgGenControlConfig → sdPreInvoke → per sub-request
//     apiAccessPreInvoke → apiAccessCommit or apiAccessRollback →
//     sdTaskFinished per sub-task → sdJobFinished. Requests are signed and
//     tokens encrypted with pkg/callback, exactly as the seed's Python checks
//     them. Asynchronous events that are not answered 2xx are retried on the
//     seed's schedule (10 s, 30 s, 1 min … 2 h), compressed by a time scale.
//     The images are real PNGs served by the simulator at URLs that expire.
//   - SNS (seeds 000/001): a local SNS with its own CA serves its signing
//     certificate over HTTPS, sends a SubscriptionConfirmation and waits for
//     the GET on its SubscribeURL, then delivers signed Notifications (v1 and
//     v2) in the SD-on-EKS shape, with images stored in an S3 bucket as s3://
//     URIs, and retries as SNS does (3 retries, 20 s apart by default).
//
// Everything the simulator sent and how it was answered is kept in a Record;
// Verify reads the streams (INGRESS, QUOTA, ARCHIVE, JOBS) and checks the
// Record against them. It decodes the streams with names and types of its
// own, spelled from CONTRACT §6, and never with pkg/contract's, which the
// services share: it is the independent check of that contract. The
// simulator never contacts anything but the addresses it is given; it is
// meant for loopback.
package simulator
