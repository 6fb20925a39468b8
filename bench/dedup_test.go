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

// BenchmarkDedupMemory measures the server memory each de-duplication
// mechanism costs per remembered event and extrapolates it to 1,000 events/s
// over the platform's retry horizon: one key per event in the INGRESS_DEDUP
// bucket (kept 7 h), one Nats-Msg-Id in a stream's duplicate window (the
// design keeps 10 min; the alternative would keep 6 h).
func BenchmarkDedupMemory(b *testing.B) {
	const rate = 1000
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	for range b.N {
		_, js := jetStream(b, false)
		ctx := context.Background()
		kv, err := js.KeyValue(ctx, "INGRESS_DEDUP")
		if err != nil {
			b.Fatal(err)
		}
		before := settledHeap()
		val := make([]byte, 8)
		for i := range n {
			if _, err := js.PublishAsync("$KV.INGRESS_DEDUP."+fmt.Sprintf("cb-%032x", i), val); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		perKey := float64(settledHeap()-before) / float64(n)
		if _, err := kv.Get(ctx, fmt.Sprintf("cb-%032x", n-1)); err != nil {
			b.Fatal(err)
		}

		_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "WINDOW", Subjects: []string{"w.>"},
			Storage: jetstream.FileStorage, Duplicates: 6 * time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		before = settledHeap()
		for i := range n {
			m := nats.NewMsg("w.x")
			m.Data = []byte(`{}`)
			m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("cb-%032x", i))
			if _, err := js.PublishMsgAsync(m); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		perID := float64(settledHeap()-before) / float64(n)

		design := perKey*7*3600*rate + perID*10*60*rate
		window := perID * 6 * 3600 * rate
		b.Logf("bucket key: %.0f B; duplicate-window id: %.0f B", perKey, perID)
		b.Logf("at %d events/s: design (7 h bucket + 10 min window) %.2f GiB; 6 h window alone %.2f GiB",
			rate, design/(1<<30), window/(1<<30))
		b.ReportMetric(perKey, "B/bucket-key")
		b.ReportMetric(perID, "B/window-id")
		b.ReportMetric(design/(1<<30), "GiB-design")
		b.ReportMetric(window/(1<<30), "GiB-6h-window")
	}
}
