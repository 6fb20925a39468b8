package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
)

// asyncLoad is a series of signed sdTaskFinished callbacks, each with its
// own invokeId and body, delivered as the platform delivers them: every
// non-2xx answer is retried with the same body and invokeId, signed afresh.
type asyncLoad struct {
	total  int
	prefix string // of the invokeIds
	token  string

	results []outcome
	acked   atomic.Int64
}

// outcome is what became of one callback of the load.
type outcome struct {
	attempts int
	err      error
	sent     time.Time // first attempt
	acked    time.Time // the 2xx
}

func newAsyncLoad(total int, prefix, token string) *asyncLoad {
	return &asyncLoad{total: total, prefix: prefix, token: token, results: make([]outcome, total)}
}

func (l *asyncLoad) invokeID(i int) string { return fmt.Sprintf("%s-%04d", l.prefix, i) }

func (l *asyncLoad) body(i int) []byte {
	return fmt.Appendf(nil, `{"success":true,"data":{"generatedImageId":"g-%d","url":"https://images.invalid/%d.png","type":"png"}}`, i, i)
}

// run starts the load on a fixed schedule, one callback every interval (a
// sender that falls behind catches up, so the offered rate stays 1/interval
// on average on a busy machine), and returns a wait for every delivery.
func (l *asyncLoad) run(ctx context.Context, p *platform, base string, interval time.Duration) (wait func()) {
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		for i := range l.total {
			select {
			case <-time.After(time.Until(start.Add(time.Duration(i) * interval))):
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				sent := time.Now()
				n, err := p.deliver(ctx, base, callback.BizTaskFinished, l.invokeID(i), l.token, l.body(i))
				l.results[i] = outcome{attempts: n, err: err, sent: sent, acked: time.Now()}
				if err == nil {
					l.acked.Add(1)
				}
			})
		}
	})
	return wg.Wait
}

// checkDelivered fails the test unless every callback was acknowledged.
func (l *asyncLoad) checkDelivered(t *testing.T) {
	t.Helper()
	for i, r := range l.results {
		if r.err != nil {
			t.Errorf("callback %d: %v", i, r.err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkStoredOnce checks that INGRESS holds every callback of the load
// exactly once, with its body, and nothing else.
func (l *asyncLoad) checkStoredOnce(t *testing.T, js jetstream.JetStream, when string) {
	t.Helper()
	msgs := readAll(t, js, contract.StreamIngress, "sd.callback.default.>")
	seen := map[string]int{}
	for _, m := range msgs {
		id := m.Headers().Get(event.HeaderInvokeID)
		seen[id]++
		var i int
		if _, err := fmt.Sscanf(id, l.prefix+"-%d", &i); err != nil || i < 0 || i >= l.total {
			t.Errorf("%s: unexpected message for invokeId %q", when, id)
			continue
		}
		if !bytes.Equal(m.Data(), l.body(i)) {
			t.Errorf("%s: %s stored with body %q", when, id, m.Data())
		}
	}
	for i := range l.total {
		if n := seen[l.invokeID(i)]; n != 1 {
			t.Errorf("%s: %s stored %d times, want once", when, l.invokeID(i), n)
		}
	}
	if len(msgs) != l.total {
		t.Errorf("%s: INGRESS holds %d callbacks, want %d", when, len(msgs), l.total)
	}
}
