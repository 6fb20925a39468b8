package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natsauth"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/proctest"
)

// TestDescriptorFloodUnderLimit runs the built binary with 64 descriptors
// (RLIMIT_NOFILE) and its derived connection cap (a quarter: 16), and
// floods it with idle keep-alive connections: the cap refuses or evicts
// the extra ones and counts them, callbacks are stored during the flood,
// the process never runs out of descriptors, and after the flood
// everything works.
func TestDescriptorFloodUnderLimit(t *testing.T) {
	const limit, flood = 64, 300
	bin := proctest.Build(t, ".", "sdevents")
	dir := t.TempDir()
	httpAddr, natsAddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	cfgPath := filepath.Join(dir, "sdevents.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`http:
  addr: %s
nats:
  embedded:
    addr: %s
    store_dir: %s
callbacks:
  - name: default
    keys: [{ak: AK-flood, sk: SK-flood}]
archive:
  dir: %s
log:
  level: warn
shutdown_timeout: 5s
`, httpAddr, natsAddr, filepath.Join(dir, "nats"), filepath.Join(dir, "archive")))
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	proc := proctest.Start(t, "/bin/sh", filepath.Join(dir, "run.log"),
		"-c", `ulimit -n `+strconv.Itoa(limit)+` && exec "$0" "$@"`, bin, "run", "--config", cfgPath)
	waitReady(t, proc, httpAddr, 2*time.Minute)
	before := processFigures(t, httpAddr)
	t.Logf("before the flood: %v", before)

	// The flood: idle keep-alive connections, held open.
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 32)
	)
	for range flood {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", httpAddr, 10*time.Second)
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: flood\r\n\r\n"); err == nil {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					resp.Body.Close()
				}
				_ = c.SetReadDeadline(time.Time{})
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	stored := 0
	for i := range 5 {
		natstest.Eventually(t, time.Minute, "a callback stored during the flood", func() bool {
			code, err := sendTaskFinished(cfg, httpAddr, fmt.Sprintf("i-flood-%d", i), fmt.Sprintf("n-flood-%d", i))
			return err == nil && code == http.StatusOK
		})
		stored++
	}
	during := processFigures(t, httpAddr)
	t.Logf("during the flood (%d connections held): %v", len(conns), during)
	if during["process_open_fds"] >= limit {
		t.Errorf("%v descriptors open at a limit of %d", during["process_open_fds"], limit)
	}
	if during["sdevents_http_connections_refused_total"]+during["sdevents_http_connections_evicted_total"] < flood-16 {
		t.Errorf("refused %v and evicted %v of %d connections over a cap of 16", during["sdevents_http_connections_refused_total"],
			during["sdevents_http_connections_evicted_total"], flood)
	}
	for _, c := range conns {
		c.Close()
	}

	for i := range 5 {
		code, err := sendTaskFinished(cfg, httpAddr, fmt.Sprintf("i-after-%d", i), fmt.Sprintf("n-after-%d", i))
		if err != nil || code != http.StatusOK {
			t.Fatalf("after the flood: %d %v\n%s", code, err, proc.Tail(20))
		}
		stored++
	}
	if code, body := get(t, httpAddr, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after the flood: %d %s", code, body)
	}
	t.Logf("after the flood: %v", processFigures(t, httpAddr))
	pw, err := natsauth.ReadPassword(credentialsDir(cfg.NATS.Embedded.StoreDir), natsauth.Admin)
	if err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, "nats://"+natsAddr, nats.UserInfo(natsauth.Admin, pw))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, contract.StreamIngress)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(stored) {
		t.Fatalf("INGRESS holds %d events, %d were acknowledged", info.State.Msgs, stored)
	}
}

// processFigures reads the process's descriptors, memory, goroutines and
// connection counters from its /metrics, retrying while the listener is
// full.
func processFigures(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	want := []string{"process_open_fds", "process_resident_memory_bytes", "go_goroutines",
		"sdevents_http_connections_open", "sdevents_http_connections_refused_total", "sdevents_http_connections_evicted_total"}
	var body string
	natstest.Eventually(t, time.Minute, "/metrics", func() bool {
		code, b := get(t, addr, "/metrics")
		body = b
		return code == http.StatusOK
	})
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		for _, name := range want {
			if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
				f := strings.Fields(rest)
				if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
					out[name] += v
				}
			}
		}
	}
	return out
}
