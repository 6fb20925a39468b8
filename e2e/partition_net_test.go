package e2e_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/pkg/proctest"
)

// The partition proofs cut the links between JetStream nodes with iptables.
// Every node is a nats-server process on a loopback address of its own
// (127.X.Y.2, .3, .4 with X.Y random per run) and under a group id of its
// own, so that the rules can name exactly the test's connections:
//
//   - a mangle rule marks every connection a node opens (matched by the
//     group id of its socket) with the node's connection mark;
//   - cutting node n off drops, in both directions, every packet of a
//     connection to n's route port and of a connection n opened to another
//     node's route port. Client connections are never touched.
//
// Every rule lives in two chains named after the run (sdpart-<pid>-<hex>),
// reached from OUTPUT by a jump carrying the same name as a comment. The
// chains are removed by t.Cleanup (which also runs after a panic in the
// test), by a watchdog shortly before the test binary's -timeout would kill
// the process without cleanups, and — for a run killed outright — by the
// next run, which removes the chains of every run whose process is gone.

// partNet is the packet filter of one run.
type partNet struct {
	t     *testing.T
	chain string
	once  sync.Once
	mu    sync.Mutex
	cuts  map[int]bool // nodes currently cut off
	nodes []*partNode
}

// partNode is one nats-server process of a partition proof.
type partNode struct {
	*proctest.Proc
	t       *testing.T
	id      string
	ip      string
	client  int
	route   int
	monitor int
	gid     uint32
	mark    uint32
}

// connMarkMask is the part of the connection mark the rules set and test;
// the other bits are left to whoever else uses them.
const connMarkMask = 0x00f00000

// chainPrefix starts the name of every chain the partition proofs create.
const chainPrefix = "sdpart-"

// partitionSupport returns why this machine cannot run the partition
// proofs, or "" when it can: they need root and an iptables with the
// owner, conntrack and connmark matches.
func partitionSupport() string {
	if os.Geteuid() != 0 {
		return "needs root for iptables and per-node group ids"
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return "iptables not found"
	}
	if out, err := exec.Command("iptables", "-w", "5", "-t", "mangle", "-S", "OUTPUT").CombinedOutput(); err != nil {
		return fmt.Sprintf("iptables does not work here: %v: %s", err, bytes.TrimSpace(out))
	}
	return ""
}

// iptables runs one iptables command; -w waits for the lock that other
// users of iptables on the machine may hold.
func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w", "10"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// removeStaleChains removes the chains of earlier runs whose process is
// gone (a run killed before its cleanup), and their jumps.
func removeStaleChains(t *testing.T) {
	t.Helper()
	for _, table := range []string{"filter", "mangle"} {
		out, err := exec.Command("iptables", "-w", "10", "-t", table, "-S").Output()
		if err != nil {
			t.Fatalf("iptables -t %s -S: %v", table, err)
		}
		for line := range strings.Lines(string(out)) {
			f := strings.Fields(line)
			if len(f) != 2 || f[0] != "-N" || !strings.HasPrefix(f[1], chainPrefix) {
				continue
			}
			pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(f[1], chainPrefix), "-", 2)[0])
			if err != nil || processAlive(pid) {
				continue
			}
			t.Logf("removing the stale chain %s of table %s (process %d is gone)", f[1], table, pid)
			removeChain(table, f[1])
		}
	}
}

func processAlive(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return err == nil
}

// removeChain removes every jump from OUTPUT to chain, then the chain. It
// ignores what is already gone.
func removeChain(table, chain string) {
	for range 10 {
		if iptables("-t", table, "-D", "OUTPUT", "-m", "comment", "--comment", chain, "-j", chain) != nil {
			break
		}
	}
	_ = iptables("-t", table, "-F", chain)
	_ = iptables("-t", table, "-X", chain)
}

// newPartNet creates the run's chains and their jumps from OUTPUT, removed
// when the test ends (or before its deadline).
func newPartNet(t *testing.T) *partNet {
	t.Helper()
	removeStaleChains(t)
	n := &partNet{t: t, chain: fmt.Sprintf("%s%d-%04x", chainPrefix, os.Getpid(), rand.IntN(1<<16)), cuts: map[int]bool{}}
	for _, table := range []string{"filter", "mangle"} {
		if err := iptables("-t", table, "-N", n.chain); err != nil {
			n.remove()
			t.Fatal(err)
		}
		if err := iptables("-t", table, "-I", "OUTPUT", "-m", "comment", "--comment", n.chain, "-j", n.chain); err != nil {
			n.remove()
			t.Fatal(err)
		}
	}
	t.Cleanup(n.remove)
	if deadline, ok := t.Deadline(); ok {
		// -timeout kills the test binary without running cleanups.
		watchdog := time.AfterFunc(time.Until(deadline)-15*time.Second, n.remove)
		t.Cleanup(func() { watchdog.Stop() })
	}
	return n
}

// remove deletes the run's rules; it runs once.
func (n *partNet) remove() {
	n.once.Do(func() {
		for _, table := range []string{"filter", "mangle"} {
			removeChain(table, n.chain)
		}
	})
}

// markConnections makes every connection node opens carry its mark.
func (n *partNet) markConnections(node *partNode) {
	n.t.Helper()
	err := iptables("-t", "mangle", "-A", n.chain, "-m", "owner", "--gid-owner", strconv.FormatUint(uint64(node.gid), 10),
		"-m", "conntrack", "--ctstate", "NEW", "-j", "CONNMARK", "--set-xmark", fmt.Sprintf("%#x/%#x", node.mark, connMarkMask))
	if err != nil {
		n.t.Fatal(err)
	}
}

// cutRules are the filter rules that cut node i off from the others.
func (n *partNet) cutRules(i int) [][]string {
	me := n.nodes[i]
	rules := [][]string{{"-p", "tcp", "-m", "conntrack", "--ctorigdst", me.ip, "--ctorigdstport", strconv.Itoa(me.route), "-j", "DROP"}}
	for j, other := range n.nodes {
		if j == i {
			continue
		}
		rules = append(rules, []string{"-p", "tcp", "-m", "connmark", "--mark", fmt.Sprintf("%#x/%#x", me.mark, connMarkMask),
			"-m", "conntrack", "--ctorigdst", other.ip, "--ctorigdstport", strconv.Itoa(other.route), "-j", "DROP"})
	}
	return rules
}

// cut isolates node i from the other nodes: no route traffic in either
// direction. Its clients stay connected to it.
func (n *partNet) cut(i int) {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cuts[i] {
		return
	}
	for _, r := range n.cutRules(i) {
		if err := iptables(append([]string{"-A", n.chain}, r...)...); err != nil {
			n.t.Fatal(err)
		}
	}
	n.cuts[i] = true
}

// heal removes the rules that cut node i off.
func (n *partNet) heal(i int) {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.cuts[i] {
		return
	}
	for _, r := range n.cutRules(i) {
		if err := iptables(append([]string{"-D", n.chain}, r...)...); err != nil {
			n.t.Fatal(err)
		}
	}
	delete(n.cuts, i)
}

// startPartCluster starts three nats-server processes, each on its own
// loopback address and group id with every route configured, with the
// connection marks in place before the first route is opened, and waits
// until each accepts clients.
func startPartCluster(t *testing.T, pn *partNet) []*partNode {
	t.Helper()
	bin := natsServerBinary(t)
	x, y := 64+rand.IntN(128), 1+rand.IntN(250)
	ports := proctest.FreePorts(t, 9)
	gidBase := uint32(3_000_000 + rand.IntN(1_000_000)*4)
	dir := t.TempDir()
	var nodes []*partNode
	var routes []string
	for i := range 3 {
		n := &partNode{t: t, id: fmt.Sprintf("q%d", i+1), ip: fmt.Sprintf("127.%d.%d.%d", x, y, i+2),
			client: ports[i], monitor: ports[3+i], route: ports[6+i], gid: gidBase + uint32(i), mark: uint32(i+1) << 20}
		routes = append(routes, fmt.Sprintf("nats-route://%s", net.JoinHostPort(n.ip, strconv.Itoa(n.route))))
		nodes = append(nodes, n)
	}
	pn.nodes = nodes
	for _, n := range nodes {
		pn.markConnections(n)
	}
	for _, n := range nodes {
		conf := filepath.Join(dir, n.id+".conf")
		err := os.WriteFile(conf, fmt.Appendf(nil, `server_name: %s
listen: %s
http: %s
max_payload: 8MB
jetstream { store_dir: %q }
cluster {
  name: sdevents-partition
  listen: %s
  routes: [%s]
}
`, n.id, net.JoinHostPort(n.ip, strconv.Itoa(n.client)), net.JoinHostPort(n.ip, strconv.Itoa(n.monitor)),
			filepath.Join(dir, n.id), net.JoinHostPort(n.ip, strconv.Itoa(n.route)), strings.Join(routes, ", ")), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		n.Proc = proctest.StartAs(t, n.gid, bin, filepath.Join(dir, n.id+".log"), "-c", conf)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- %s log (tail) ---\n%s", n.id, n.Tail(25))
			}
		})
	}
	for _, n := range nodes {
		natstest.Eventually(t, 30*time.Second, n.id+" accepting clients", func() bool {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(n.ip, strconv.Itoa(n.client)), time.Second)
			if err != nil {
				return false
			}
			c.Close()
			return true
		})
	}
	return nodes
}

// url is the node's client URL.
func (n *partNode) url() string {
	return "nats://" + net.JoinHostPort(n.ip, strconv.Itoa(n.client))
}
