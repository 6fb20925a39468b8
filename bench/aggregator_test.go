package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/aggregator"
	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// envInt reads a size from the environment, for quick runs.
func aggEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// fill stores n callback events in INGRESS as the ingress does: jobs of
// eight sdTaskFinished and one sdJobFinished, round-robin over accounts.
func fillIngress(b *testing.B, js jetstream.JetStream, n, accounts int) {
	b.Helper()
	body := []byte(`{"success":true,"data":{"generatedImageId":"g","url":"https://img.example/g.png","type":"png","width":512,"height":512}}`)
	for i := range n {
		acct := fmt.Sprintf("a_bench%05d", i%accounts)
		biz := "sdTaskFinished"
		if (i/accounts)%9 == 8 {
			biz = "sdJobFinished"
		}
		msg := event.Message("sd.callback.default."+biz, event.Meta{
			ID: "b-" + strconv.Itoa(i), Source: "/sdevents/callbacks/default", Type: "sd.callback." + biz,
			Time: time.Now(), Subject: acct, ContentType: "application/json",
		}, body)
		for k, v := range map[string]string{event.HeaderSDSource: "default", event.HeaderSDAccount: acct,
			event.HeaderBizType: biz, event.HeaderInvokeID: "inv-" + strconv.Itoa(i/accounts/9)} {
			event.Set(msg, k, v)
		}
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
		if i%1024 == 1023 { // well under the client's async limit (4,000), which stalls on a busy machine
			<-js.PublishAsyncComplete()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish did not complete")
	}
}

func aggServer(b *testing.B) (*natstest.Node, jetstream.JetStream) {
	srv := natstest.Start(b)
	_, js := natstest.Connect(b, srv.URL())
	natstest.ApplyStreams(b, js, 1)
	return srv, js
}

// BenchmarkAggregatorLive: task events aggregated per second by one
// aggregator catching up on a backlog in INGRESS (default 200,000 events,
// BENCH_LIVE_EVENTS), until its consumer's ack floor reaches the last one,
// with the service's default concurrency (BENCH_AGG_WORKERS overrides it).
func BenchmarkAggregatorLive(b *testing.B) {
	n := aggEnvInt("BENCH_LIVE_EVENTS", 200_000)
	for range b.N {
		srv, js := aggServer(b)
		fillIngress(b, js, n, 1000)
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		var opts []aggregator.Option
		if w := aggEnvInt("BENCH_AGG_WORKERS", 0); w > 0 {
			opts = append(opts, aggregator.WithWorkers(w)) // else the service's default
		}
		svc, err := aggregator.New(context.Background(), aggregator.Config{}, natstest.JetStream(b, nc), prometheus.NewRegistry(), opts...)
		if err != nil {
			b.Fatal(err)
		}
		cons, err := js.Consumer(context.Background(), contract.StreamIngress, aggregator.ConsumerName)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.ResetTimer()
		start, cpu0 := time.Now(), cpuTime()
		go func() { done <- svc.Run(ctx) }()
		for {
			info, err := cons.Info(context.Background())
			if err == nil && info.AckFloor.Stream >= uint64(n) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		elapsed, cpu := time.Since(start), cpuTime()-cpu0
		b.StopTimer()
		cancel()
		<-done
		nc.Close()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/event")
	}
}

// fillTasks stores n sdTaskFinished callbacks of one account in INGRESS and
// no sdJobFinished: the account never pauses, so its job only closes at the
// aggregator's limits.
func fillTasks(b *testing.B, js jetstream.JetStream, n int, acct string) {
	b.Helper()
	body := []byte(`{"success":true,"data":[{"generatedImageId":"g1","url":"https://img.example/g1.png?Expires=1764720000&Signature=abc","type":"png","width":512,"height":512},` +
		`{"generatedImageId":"g2","url":"https://img.example/g2.png?Expires=1764720000&Signature=abc","type":"png","width":512,"height":512}]}`)
	for i := range n {
		msg := event.Message("sd.callback.default.sdTaskFinished", event.Meta{
			ID: acct + "-" + strconv.Itoa(i), Source: "/sdevents/callbacks/default", Type: "sd.callback.sdTaskFinished",
			Time: time.Now(), Subject: acct, ContentType: "application/json",
		}, body)
		for k, v := range map[string]string{event.HeaderSDSource: "default", event.HeaderSDAccount: acct,
			event.HeaderBizType: "sdTaskFinished", event.HeaderInvokeID: "inv-" + strconv.Itoa(i)} {
			event.Set(msg, k, v)
		}
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
		if i%1024 == 1023 {
			<-js.PublishAsyncComplete()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish did not complete")
	}
}

// BenchmarkAggregatorJobSize: the aggregator's CPU time per event when one
// account sends 1,000, 10,000 and 100,000 sdTaskFinished callbacks and never
// an sdJobFinished (BENCH_JOB_SIZES, comma-separated, overrides the sizes).
// One replica drains the backlog until the consumer's ack floor reaches the
// last event, or gives up after BENCH_JOB_TIMEOUT seconds (default 600) and
// reports how far it got. Flat CPU-µs/event across the sizes means the cost
// of a message does not depend on how many tasks its job already holds.
func BenchmarkAggregatorJobSize(b *testing.B) {
	sizes := []int{1_000, 10_000, 100_000}
	if v := os.Getenv("BENCH_JOB_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(f); err == nil && n > 0 {
				sizes = append(sizes, n)
			}
		}
	}
	timeout := time.Duration(aggEnvInt("BENCH_JOB_TIMEOUT", 600)) * time.Second
	for _, n := range sizes {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			for range b.N {
				srv, js := aggServer(b)
				fillTasks(b, js, n, "a_busy")
				nc, err := nats.Connect(srv.URL())
				if err != nil {
					b.Fatal(err)
				}
				svc, err := aggregator.New(context.Background(), aggregator.Config{}, natstest.JetStream(b, nc), prometheus.NewRegistry())
				if err != nil {
					b.Fatal(err)
				}
				cons, err := js.Consumer(context.Background(), contract.StreamIngress, aggregator.ConsumerName)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				go func() { done <- svc.Run(ctx) }()
				var floor uint64
				for time.Since(start) < timeout {
					if info, err := cons.Info(context.Background()); err == nil {
						floor = info.AckFloor.Stream
					}
					if floor >= uint64(n) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				elapsed, cpu := time.Since(start), cpuTime()-cpu0
				b.StopTimer()
				cancel()
				<-done
				nc.Close()
				if floor < uint64(n) {
					b.Logf("gave up after %s: %d of %d events acknowledged", elapsed.Round(time.Second), floor, n)
				}
				handled := max(floor, 1)
				b.ReportMetric(float64(handled)/elapsed.Seconds(), "events/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(handled), "cpu-µs/event")
				b.ReportMetric(float64(floor)/float64(n), "done")
			}
		})
	}
}

// BenchmarkReplay: rebuilding job state from 1,000,000 INGRESS events
// (BENCH_REPLAY_EVENTS) against the floor: reading the same events with an
// ordered consumer and doing nothing.
func BenchmarkReplay(b *testing.B) {
	n := aggEnvInt("BENCH_REPLAY_EVENTS", 1_000_000)
	_, js := aggServer(b)
	fillIngress(b, js, n, 1000)
	cfg := jobs.Config{}
	ctx := context.Background()
	for range b.N {
		b.ResetTimer()
		start, cpu0 := time.Now(), cpuTime()
		read := floorRead(b, js)
		floor, floorCPU := time.Since(start), cpuTime()-cpu0
		start, cpu0 = time.Now(), cpuTime()
		res, err := aggregator.Replay(ctx, js, cfg, time.Now(), nil)
		replay, replayCPU := time.Since(start), cpuTime()-cpu0
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if read != uint64(n) || res.Events != uint64(n) {
			b.Fatalf("read %d, replayed %d, want %d", read, res.Events, n)
		}
		b.ReportMetric(float64(n)/floor.Seconds(), "floor-events/s")
		b.ReportMetric(float64(n)/replay.Seconds(), "replay-events/s")
		b.ReportMetric(floor.Seconds()/replay.Seconds(), "replay/floor")
		b.ReportMetric(replay.Seconds(), "replay-s")
		b.ReportMetric(float64(floorCPU.Microseconds())/float64(n), "floor-cpu-µs/event")
		b.ReportMetric(float64(replayCPU.Microseconds())/float64(n), "replay-cpu-µs/event")
	}
}

// cpuTime is the CPU time this process (the benchmark, the service and the
// embedded server) has used: on a shared machine, where the wall clock
// depends on the neighbours, it shows what a change costs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// floorRead reads every INGRESS message the aggregator consumer would read
// with an ordered consumer and does nothing with them.
func floorRead(b *testing.B, js jetstream.JetStream) uint64 {
	ctx := context.Background()
	c, err := js.Consumer(ctx, contract.StreamIngress, aggregator.ConsumerName)
	if err != nil {
		b.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, contract.StreamIngress, jetstream.OrderedConsumerConfig{FilterSubjects: c.CachedInfo().Config.FilterSubjects})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(8192))
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	var read uint64
	for {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		meta, err := m.Metadata()
		if err != nil {
			b.Fatal(err)
		}
		read++
		if meta.NumPending == 0 {
			return read
		}
	}
}
