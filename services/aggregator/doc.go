// Package aggregator combines the task results in INGRESS into one record per
// job on the JOBS stream, exactly once whatever the replicas and redeliveries.
package aggregator
