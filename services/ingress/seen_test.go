package ingress

import (
	"runtime"
	"testing"
	"time"
)

func TestSeenIndex(t *testing.T) {
	t.Parallel()
	x := newSeenIndex(7 * time.Hour)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fp, ok := fingerprint("cb-00112233445566778899aabbccddeeff")
	if !ok || fp != 0x0011223344556677 {
		t.Fatalf("fingerprint = %x, %v", fp, ok)
	}
	if _, ok := fingerprint("nope"); ok {
		t.Fatal("fingerprint of a foreign key")
	}
	x.add(fp, 42, t0)
	if seq, ok := x.lookup(fp); !ok || seq != 42 {
		t.Fatalf("lookup = %d, %v", seq, ok)
	}
	x.forget(t0.Add(6 * time.Hour))
	if _, ok := x.lookup(fp); !ok {
		t.Fatal("forgotten before the horizon")
	}
	x.forget(t0.Add(7*time.Hour + 30*time.Minute))
	if _, ok := x.lookup(fp); ok {
		t.Fatal("remembered after the horizon")
	}
	if n := x.entries.Load(); n != 0 {
		t.Fatalf("entries = %d after forgetting", n)
	}
}

// BenchmarkSeenIndexMemory reports the heap one remembered event costs in an
// ingress replica's de-duplication index.
func BenchmarkSeenIndexMemory(b *testing.B) {
	const n = 2_000_000
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := newSeenIndex(7 * time.Hour)
		t0 := time.Now()
		for i := range uint64(n) {
			// 1,000 events/s: spread over the slots as live traffic would be.
			x.add(i*0x9E3779B97F4A7C15, i, t0.Add(time.Duration(i)*time.Millisecond))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per := float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(x)
		b.ReportMetric(per, "B/entry")
		b.ReportMetric(per*7*3600*1000/(1<<30), "GiB@1000/s·7h")
	}
}
