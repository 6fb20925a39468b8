package ingress_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/callback"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// TestTwinsOnReplicatedStream: on an R3 INGRESS, a second publish of a
// Nats-Msg-Id whose first is still being replicated is answered "duplicate
// message id is in process". Hundreds of byte-identical twins, each pair
// sent at once to two ingress replicas, are all answered 200 and each event
// is stored once.
func TestTwinsOnReplicatedStream(t *testing.T) {
	t.Parallel()
	cluster := natstest.StartCluster(t)
	_, js := natstest.Connect(t, cluster.URLs())
	natstest.ApplyStreams(t, js, 3)
	cfg := roomyConfig() // only the twins are under test
	var replicas []replica
	for range 2 {
		_, js := natstest.Connect(t, cluster.URLs())
		replicas = append(replicas, serveIngress(t, cfg, js, io.Discard))
	}
	const events = 300
	c := call{bizType: callback.BizTaskFinished, token: "user-twins", key: testKey}
	type twin struct {
		query string
		body  []byte
	}
	twins := make([]twin, events)
	for i := range twins {
		c.invokeID = "i-twin-" + strconv.Itoa(i)
		c.body = []byte(`{"success":true,"n":` + strconv.Itoa(i) + `}`)
		twins[i] = twin{c.withTS(t, time.Now()).Encode(), c.body}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	var mu sync.Mutex
	answers := map[string]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, tw := range twins {
		sem <- struct{}{}
		start := make(chan struct{})
		var pair sync.WaitGroup
		for _, r := range replicas {
			pair.Add(1)
			wg.Go(func() {
				defer pair.Done()
				<-start
				resp, err := client.Post(r.base+"/v1/callbacks/default?"+tw.query, "application/json", bytes.NewReader(tw.body))
				key := ""
				if err != nil {
					key = err.Error()
				} else {
					raw, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					key = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(raw))
				}
				mu.Lock()
				answers[key]++
				mu.Unlock()
			})
		}
		close(start)
		go func() { pair.Wait(); <-sem }()
	}
	wg.Wait()
	if ok := answers[`200 {"success":true}`]; ok != 2*events {
		t.Fatalf("answers %v, want %d × 200", answers, 2*events)
	}
	s, err := js.Stream(t.Context(), contract.StreamIngress)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != events {
		t.Fatalf("stored %d events, want %d", info.State.Msgs, events)
	}
}
