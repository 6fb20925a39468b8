// Package e2e holds the end-to-end proofs of sdevents that need more than one
// service or more than one JetStream node: a three-node JetStream cluster on
// loopback with R3 streams, the real ingress, quota and archiver services on
// real HTTP, and nodes (shut down, or nats-server processes killed with
// SIGKILL) or service replicas taken down while load runs — or nodes cut off
// from each other by packet filters while their clients stay connected
// (TestPartitions, root only). Because it sees every module of the
// workspace, it also holds the shape test: the import rules of
// docs/design.md ("The shape of the code") checked over every package and
// module (shape_test.go). The package has no code of its own;
// everything is in its tests.
package e2e
