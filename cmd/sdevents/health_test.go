package main

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// TestWrittenBy: `sdevents run` checks every stream a service writes, each
// once; a single service only its own.
func TestWrittenBy(t *testing.T) {
	if got, want := writtenBy([]string{"ingress"}), []string{contract.StreamIngress, contract.StreamIngressClaims}; !slices.Equal(got, want) {
		t.Errorf("ingress: %v, want %v", got, want)
	}
	all := writtenBy(runAll())
	for _, s := range runAll() {
		if len(writes[s]) == 0 {
			t.Errorf("service %q writes no stream", s)
		}
		for _, name := range writes[s] {
			if !slices.Contains(all, name) {
				t.Errorf("run misses %s of %s", name, s)
			}
		}
	}
	if !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Errorf("not sorted or repeated: %v", all)
	}
}

// TestProcessLeavesACutOffNode runs `sdevents ingress` against a three-node
// cluster (R3) and cuts the node it is connected to off from the other two,
// while the process stays connected to it. /readyz turns 503 naming
// "jetstream" — before, it stayed 200 when the node led INGRESS (the
// connection was up and the node answered stream info from its stale
// state). Then the connection moves to a node of the majority and /readyz
// is 200 again while the node is still cut off — before, the connection
// stayed on the node — and a callback is stored.
func TestProcessLeavesACutOffNode(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster partition: not in -short")
	}
	c := natstest.StartCluster(t)
	cfg := exampleConfig(t, t.TempDir())
	cfg.NATS.URL = c.URLs()
	cfg.NATS.Replicas = 3
	ctx, cancel := context.WithCancel(context.Background())
	p, cleanup, err := build(ctx, cfg, []string{"ingress"})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		cleanup()
	})
	addr := p.http.Addr()
	waitHTTPReady(t, addr)

	hostOf := func(u string) string {
		pu, err := url.Parse(u)
		if err != nil {
			return u
		}
		return pu.Host
	}
	var cut *natstest.Node
	for _, n := range c.Nodes {
		if hostOf(n.URL()) == hostOf(p.nc.ConnectedUrl()) {
			cut = n
		}
	}
	if cut == nil {
		t.Fatalf("connected to %s, not a node of the cluster", p.nc.ConnectedUrl())
	}
	t.Logf("cutting off %s (INGRESS leader: %v)", cut.Srv.Name(), cut.Srv.JetStreamIsStreamLeader("$G", contract.StreamIngress))
	c.Isolate(t, cut)
	logged := false
	natstest.Eventually(t, 30*time.Second, `/readyz 503 naming "jetstream"`, func() bool {
		code, body := get(t, addr, "/readyz")
		if code == http.StatusServiceUnavailable && !logged {
			t.Logf("/readyz: %s", body)
			logged = true
		}
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"jetstream"`)
	})
	natstest.Eventually(t, 60*time.Second, "/readyz 200 on another node", func() bool {
		code, _ := get(t, addr, "/readyz")
		return code == http.StatusOK && p.nc.IsConnected() && hostOf(p.nc.ConnectedUrl()) != hostOf(cut.URL())
	})
	if code, err := sendTaskFinished(cfg, addr, "i-moved", "n-moved"); err != nil || code != http.StatusOK {
		t.Errorf("callback after the move: %d %v", code, err)
	}
	c.Rejoin(t, cut)
}
