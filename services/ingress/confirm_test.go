package ingress_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/sns"
	"github.com/sdevents/sdevents/pkg/sns/snstest"
	"github.com/sdevents/sdevents/services/ingress"
)

// TestSNSConfirmationReplayedConfirmsOnce delivers one signed
// SubscriptionConfirmation 300 times: 100 at once, spread over two ingress
// replicas, then 100 in turn to each, then 100 to a replica started
// afterwards (a restart). Exactly one GET reaches the SubscribeURL; the
// confirmation is stored once; deliveries that found the GET in progress
// were answered 503 (SNS delivers them again), every other one 200. Its 300
// deliveries load the machine, so it runs alone, not in parallel.
func TestSNSConfirmationReplayedConfirmsOnce(t *testing.T) {
	local, err := snstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(local.Close)
	cfg := snsConfig(t, local, true)
	h := startHarness(t, cfg)
	second := h.replica(cfg)
	env, err := local.SubscriptionConfirmation(topic, sns.SignatureV1)
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu    sync.Mutex
		codes = map[int]int{}
		wg    sync.WaitGroup
	)
	deliver := func(base string) {
		code, body, err := deliverSNS(base, "eks", env, nil)
		if err != nil {
			t.Error(err)
			return
		}
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Errorf("answer %d: %s", code, body)
		}
		mu.Lock()
		codes[code]++
		mu.Unlock()
	}
	for i := range 100 {
		base := h.base
		if i%2 == 1 {
			base = second
		}
		wg.Go(func() { deliver(base) })
	}
	wg.Wait()
	for i := range 100 {
		if i%2 == 0 {
			deliver(h.base)
		} else {
			deliver(second)
		}
	}
	restarted := h.replica(cfg)
	for range 100 {
		deliver(restarted)
	}
	if n := local.ConfirmGets(env.Token); n != 1 {
		t.Fatalf("%d GETs of the SubscribeURL, want 1", n)
	}
	if !local.Confirmed(env.Token) {
		t.Fatal("not confirmed")
	}
	if n := h.count("sd.sns.eks.SubscriptionConfirmation"); n != 1 {
		t.Fatalf("stored %d times, want 1", n)
	}
	t.Logf("answers: %v", codes)
	if codes[http.StatusOK] < 200 {
		t.Fatalf("answers %v: every delivery after the first 100 should be 200", codes)
	}
}

// TestSNSFailedConfirmationRetried: a failed GET is not final. The delivery
// that made it is answered 502, so SNS delivers again, and that delivery
// makes the GET again; once confirmed, no delivery GETs any more.
func TestSNSFailedConfirmationRetried(t *testing.T) {
	t.Parallel()
	h, local := startSNS(t, true)
	env, err := local.SubscriptionConfirmation(topic, sns.SignatureV2)
	if err != nil {
		t.Fatal(err)
	}
	local.FailConfirmations(1)
	for _, step := range []struct {
		name      string
		want      int
		wantGets  int
		confirmed bool
	}{
		{"the GET fails", http.StatusBadGateway, 1, false},
		{"SNS delivers again", http.StatusOK, 2, true},
		{"a replay", http.StatusOK, 2, true},
	} {
		if code := h.postSNS("eks", env, nil); code != step.want {
			t.Fatalf("%s: %d, want %d", step.name, code, step.want)
		}
		if got := local.ConfirmGets(env.Token); got != step.wantGets || local.Confirmed(env.Token) != step.confirmed {
			t.Fatalf("%s: %d GETs, confirmed %v; want %d, %v", step.name, got, local.Confirmed(env.Token), step.wantGets, step.confirmed)
		}
	}
	if n := h.count("sd.sns.eks.SubscriptionConfirmation"); n != 1 {
		t.Fatalf("stored %d times, want 1", n)
	}
}

// TestSNSAbandonedConfirmationTakenOver: a claim left "pending" by a replica
// that died before its GET ended is taken over once its lease (twice the
// fetch timeout) has passed; deliveries before that are answered 503 and
// make no GET.
func TestSNSAbandonedConfirmationTakenOver(t *testing.T) {
	t.Parallel()
	local, err := snstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(local.Close)
	const fetchTimeout = 500 * time.Millisecond
	h := startHarness(t, snsConfig(t, local, true), ingress.WithSNSConfig(func(c *sns.Config) { c.FetchTimeout = fetchTimeout }))
	env, err := local.SubscriptionConfirmation(topic, sns.SignatureV1)
	if err != nil {
		t.Fatal(err)
	}
	// What a replica that died while confirming leaves behind.
	kv, err := h.js.KeyValue(t.Context(), contract.BucketSNSConfirmations)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(t.Context(), ingress.ConfirmKey("eks", topic, env.Token), []byte("pending")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, "a delivery confirms", func() bool {
		code := h.postSNS("eks", env, nil)
		if code == http.StatusServiceUnavailable && local.ConfirmGets(env.Token) != 0 {
			t.Fatalf("a delivery answered 503 made a GET")
		}
		return code == http.StatusOK
	})
	if n := local.ConfirmGets(env.Token); n != 1 || !local.Confirmed(env.Token) {
		t.Fatalf("%d GETs, confirmed %v; want 1, true", n, local.Confirmed(env.Token))
	}
}
