package bench

import (
	"context"
	"runtime"
	"testing"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// BenchmarkIngressCluster measures signed asynchronous callbacks per second
// and p50/p99 through the full ingress at 64 keep-alive connections on a
// three-node JetStream cluster (every stream R3, the ingress connected with
// all three URLs) against the same ingress on a single node (R1), in the
// same run. Both sets of servers start from natstest's options (file
// storage, the server's default fsync interval), in this process, on
// loopback: the cluster's replication runs on the same cores as everything
// else. Reported: cluster/s, single/s, ratio and both p99s.
func BenchmarkIngressCluster(b *testing.B) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for range b.N {
		single := natstest.Start(b)
		_, sjs := natstest.Connect(b, single.URL())
		natstest.ApplyStreams(b, sjs, 1)
		singleBase := serveIngress(b, sjs)

		cluster := natstest.StartCluster(b)
		cnc, cjs := natstest.Connect(b, cluster.URLs())
		natstest.ApplyStreams(b, cjs, 3)
		clusterBase := serveIngress(b, cjs)

		singleReqs := signedTaskFinished(b, singleBase, n)
		clusterReqs := signedTaskFinished(b, clusterBase, n)
		// Warm both paths, then alternate single and cluster rounds so that
		// both see the same machine; report the median round.
		Run(context.Background(), signedTaskFinished(b, singleBase, 500), conns)
		Run(context.Background(), signedTaskFinished(b, clusterBase, 500), conns)
		const rounds = 5
		var singles, clusters []Result
		per := n / rounds
		for r := range rounds {
			runtime.GC()
			singles = append(singles, Run(context.Background(), singleReqs[r*per:(r+1)*per], conns))
			runtime.GC()
			clusters = append(clusters, Run(context.Background(), clusterReqs[r*per:(r+1)*per], conns))
		}
		for r := range rounds {
			if singles[r].Errors > 0 || clusters[r].Errors > 0 {
				b.Fatalf("errors: single %v, cluster %v", singles[r], clusters[r])
			}
		}
		s, c := median(singles), median(clusters)
		leader := cluster.StreamLeader(b, contract.StreamIngress).Srv.Name()
		b.Logf("single node (R1):        %v", s)
		b.Logf("three-node cluster (R3): %v (INGRESS leader %s, ingress connected to %s)", c, leader, cnc.ConnectedServerName())
		b.ReportMetric(c.PerSecond(), "cluster/s")
		b.ReportMetric(s.PerSecond(), "single/s")
		b.ReportMetric(c.PerSecond()/s.PerSecond(), "ratio")
		b.ReportMetric(float64(c.P99.Microseconds()), "cluster-p99-µs")
		b.ReportMetric(float64(s.P99.Microseconds()), "single-p99-µs")
		b.ReportMetric(float64(c.P50.Microseconds()), "cluster-p50-µs")
		b.ReportMetric(float64(s.P50.Microseconds()), "single-p50-µs")
	}
}
