// Package archiver copies every image named by a task result in INGRESS into
// the operator's own store (MinIO/S3 or a local directory) before its URL
// expires, and records each outcome in the ARCHIVE stream.
package archiver
