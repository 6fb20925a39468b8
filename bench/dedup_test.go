package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// settledHeap returns the live heap of the process (the embedded server lives
// in it) once the file store's message caches have expired.
func settledHeap() uint64 {
	time.Sleep(12 * time.Second) // the file store drops idle block caches after 10 s
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkDedupWindowMemory measures the server memory one Nats-Msg-Id costs
// in a stream's duplicate window and extrapolates to 1,000 events/s: the
// design keeps a 10-minute window on INGRESS; the alternative of a 6-hour
// window alone is reported beside it. The long-horizon index of the ingress is
// measured by BenchmarkSeenIndexMemory in services/ingress.
func BenchmarkDedupWindowMemory(b *testing.B) {
	const rate = 1000
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	for range b.N {
		_, js := jetStream(b, false)
		ctx := context.Background()
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "WINDOW", Subjects: []string{"w.>"},
			Storage: jetstream.FileStorage, Duplicates: 6 * time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		before := settledHeap()
		for i := range n {
			m := nats.NewMsg("w.x")
			m.Data = []byte(`{}`)
			m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("cb-%032x", i))
			if _, err := js.PublishMsgAsync(m); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		perID := (float64(settledHeap()) - float64(before)) / float64(n)
		b.Logf("duplicate-window id: %.0f B; at %d/s: 10 min window %.3f GiB, 6 h window %.2f GiB",
			perID, rate, perID*600*rate/(1<<30), perID*6*3600*rate/(1<<30))
		b.ReportMetric(perID, "B/window-id")
		b.ReportMetric(perID*600*rate/(1<<30), "GiB-10min")
		b.ReportMetric(perID*6*3600*rate/(1<<30), "GiB-6h")
	}
}
