package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkClaimMemory measures the server memory one callback sign's claim
// costs in INGRESS_CLAIMS (a message on a subject of its own, with a
// per-message TTL) and extrapolates to 1,000 callbacks/s over the 6 h 6 min a
// claim lives by default (docs/design.md, "Replays of a sign").
func BenchmarkClaimMemory(b *testing.B) {
	const rate = 1000
	lifetime := 6*time.Hour + 6*time.Minute
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	for range b.N {
		_, js := jetStream(b, false)
		before := settledHeap()
		for i := range n {
			m := nats.NewMsg(fmt.Sprintf("sdevents.ingress.claim.%032x", i))
			m.Data = make([]byte, 16)
			if _, err := js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(0), jetstream.WithMsgTTL(lifetime)); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		perClaim := (float64(settledHeap()) - float64(before)) / float64(n)
		gib := perClaim * lifetime.Seconds() * rate / (1 << 30)
		b.Logf("claim: %.0f B; at %d callbacks/s for %s: %.2f GiB", perClaim, rate, lifetime, gib)
		b.ReportMetric(perClaim, "B/claim")
		b.ReportMetric(gib, "GiB-at-1000/s")
	}
}
