package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/proctest"
)

// node is one JetStream node of a test cluster, as the proofs fault it.
type node interface {
	name() string
	// stop takes the node down: a clean shutdown or SIGKILL (faults).
	stop()
	// start brings it back with its store.
	start()
	// jsz is the node's own view of the account's streams; false while
	// the node cannot answer.
	jsz() (*server.AccountDetail, bool)
}

// inProcess is a node of natstest.StartCluster.
type inProcess struct{ *natstest.Node }

func (n inProcess) name() string { return n.Srv.Name() }
func (n inProcess) stop()        { n.Shutdown() }
func (n inProcess) start()       { n.Restart() }

func (n inProcess) jsz() (*server.AccountDetail, bool) {
	if n.Srv == nil || !n.Srv.Running() {
		return nil, false
	}
	acc, err := n.Srv.JszAccount(&server.JSzOptions{Account: "$G", Streams: true, Consumer: true})
	return acc, err == nil
}

// procCluster is a three-node JetStream cluster of nats-server processes on
// loopback, built from the nats-server module the workspace embeds, so that
// a node can die the hard way: SIGKILL, no shutdown, nothing flushed.
type procCluster struct {
	nodes []*procNode
}

// procNode is one nats-server process with its fixed ports.
type procNode struct {
	*proctest.Proc
	t       *testing.T
	id      string
	client  int
	monitor int
}

var natsServer struct {
	once sync.Once
	bin  string
	err  error
}

// natsServerBinary builds nats-server once for the package's tests.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsServer.once.Do(func() {
		dir, err := os.MkdirTemp("", "sdevents-e2e-")
		if err != nil {
			natsServer.err = err
			return
		}
		natsServer.bin, natsServer.err = proctest.BuildTo(dir, "github.com/nats-io/nats-server/v2", "nats-server")
	})
	if natsServer.err != nil {
		t.Fatal(natsServer.err)
	}
	return natsServer.bin
}

// startProcCluster starts three nodes, each given every route, and waits
// until each answers on its monitoring port.
func startProcCluster(t *testing.T) *procCluster {
	t.Helper()
	bin := natsServerBinary(t)
	c := &procCluster{}
	ports := proctest.FreePorts(t, 9)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[6+i]))
	}
	dir := t.TempDir()
	for i := range 3 {
		n := &procNode{t: t, id: fmt.Sprintf("p%d", i+1), client: ports[i], monitor: ports[3+i]}
		conf := filepath.Join(dir, n.id+".conf")
		err := os.WriteFile(conf, fmt.Appendf(nil, `server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
max_payload: 8MB
jetstream { store_dir: %q }
cluster {
  name: sdevents-e2e
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n.id, n.client, n.monitor, filepath.Join(dir, n.id), ports[6+i], strings.Join(routes, ", ")), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		n.Proc = proctest.Start(t, bin, filepath.Join(dir, n.id+".log"), "-c", conf)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- %s log (tail) ---\n%s", n.id, n.Tail(25))
			}
		})
		n.waitUp()
		c.nodes = append(c.nodes, n)
	}
	return c
}

func (c *procCluster) urls() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.client))
	}
	return strings.Join(urls, ",")
}

func (n *procNode) name() string { return n.id }
func (n *procNode) stop()        { n.Kill() }

func (n *procNode) start() {
	n.Restart()
	n.waitUp()
}

// waitUp waits until the node answers on its monitoring port.
func (n *procNode) waitUp() {
	n.t.Helper()
	natstest.Eventually(n.t, 30*time.Second, n.id+" answering on its monitoring port", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/varz", n.monitor))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (n *procNode) jsz() (*server.AccountDetail, bool) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?acc=$G&streams=true&consumers=true", n.monitor))
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	var info server.JSInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || len(info.AccountDetails) == 0 {
		return nil, false
	}
	return info.AccountDetails[0], true
}

// TestMain removes the nats-server binary the tests built, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	if natsServer.bin != "" {
		_ = os.RemoveAll(filepath.Dir(natsServer.bin))
	}
	os.Exit(code)
}
