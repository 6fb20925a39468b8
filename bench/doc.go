// Package bench holds the benchmarks of sdevents. Each benchmark measures the
// real component and a floor — the least work that could do the same job on
// the same machine — in the same run, and reports the ratio. `make bench` runs
// them; results are recorded in docs/benchmarks.md.
package bench
