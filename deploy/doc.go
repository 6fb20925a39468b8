// Package deploy holds the tests of the deployment files: the Dockerfile,
// compose.yaml, the kustomize base and overlays, the NACK resources generated
// from streams/, the NATS Helm values, and the dashboard and alert rules of
// the monitoring component. Its tests read those files from the
// repository and need no Docker engine, cluster or network.
package deploy
