package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/smallfs"
)

// TestStoreRecoversAfterDiskFull: `sdevents run` on a file system that
// fills up answers 503 and turns /readyz red (the store keeps its write
// error); once space is free again it stores callbacks again without a
// restart of the process, and INGRESS holds exactly the acknowledged ones.
func TestStoreRecoversAfterDiskFull(t *testing.T) {
	dir := smallfs.Mount(t, 32<<20)
	cfg := exampleConfig(t, filepath.Join(dir, "store"))
	r := startRun(t, cfg)
	addr := r.p.http.Addr()
	acked := 0
	n := 0
	send := func() int {
		n++
		code, err := sendTaskFinished(cfg, addr, fmt.Sprintf("i-%d", n), fmt.Sprintf("n-%d", n))
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusOK {
			acked++
		}
		return code
	}
	if code := send(); code != http.StatusOK {
		t.Fatalf("first callback: %d", code)
	}

	free := smallfs.Fill(t, dir)
	natstest.Eventually(t, time.Minute, "a callback refused on the full disk", func() bool {
		return send() == http.StatusServiceUnavailable
	})
	natstest.Eventually(t, time.Minute, "/readyz red", func() bool {
		code, body := get(t, addr, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "store")
	})

	free()
	natstest.Eventually(t, 2*time.Minute, "callbacks stored again", func() bool { return send() == http.StatusOK })
	natstest.Eventually(t, time.Minute, "/readyz green", func() bool {
		code, _ := get(t, addr, "/readyz")
		return code == http.StatusOK
	})
	for range 3 {
		if code := send(); code != http.StatusOK {
			t.Fatalf("after recovery: %d", code)
		}
	}
	if got := r.ingressMsgs(t); got != uint64(acked) {
		t.Fatalf("INGRESS holds %d events, %d were acknowledged", got, acked)
	}
}
