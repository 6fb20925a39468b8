// Package contract is the one home of the event contract of sdevents
// (docs/contract.md §6): the names of the streams and buckets, the subjects
// their messages travel on, the CloudEvents sources and types of the events,
// and the data of the QUOTA, ARCHIVE and JOBS events. Every producer
// publishes with these names and types and every reader decodes into them,
// so that a subject or a field is spelled once.
//
// Boundaries: the package holds names and shapes only; it does no I/O and
// imports nothing beyond the standard library. The streams themselves are
// defined as data in streams/, whose tests check these names against the
// files. The request/reply subjects of the quota service are pkg/quotarpc's,
// with their messages. The INGRESS data is the request body as received
// (pkg/callback, pkg/sns and pkg/taskresult read it). The simulator
// (services/simulator) decodes the streams with types of its own on
// purpose: it is the independent check of this contract.
package contract
