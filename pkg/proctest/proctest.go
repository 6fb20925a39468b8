// Package proctest runs the subprocesses of tests that kill things: a
// process starts with its output appended to a log file, dies by SIGKILL
// (never a clean stop) and can start again with the same arguments. Every
// process is also killed when the test process dies, and when the test ends.
//
// Only tests import it. It runs commands on this machine and nothing else.
package proctest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Build builds the main package pkg (a path relative to the test's working
// directory, or an import path of its module graph) into a temporary
// directory of the test as name, and returns the binary's path.
func Build(t testing.TB, pkg, name string) string {
	t.Helper()
	bin, err := BuildTo(t.TempDir(), pkg, name)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// BuildTo builds the main package pkg into dir as name, statically and
// without the race detector, and returns the binary's path.
func BuildTo(dir, pkg, name string) (string, error) {
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("proctest: go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// Proc is one subprocess, restartable.
type Proc struct {
	t    testing.TB
	bin  string
	args []string
	log  string
	// gid, when set, is the group id the process runs as.
	gid *uint32

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts bin with args, its output appended to the file log, and
// kills it when the test ends.
func Start(t testing.TB, bin, log string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, bin: bin, args: args, log: log}
	p.Restart()
	t.Cleanup(p.Kill)
	return p
}

// StartAs is Start with the process running as group id gid (the test must
// run as root), so that a packet filter can tell the process's sockets from
// every other's (iptables -m owner --gid-owner).
func StartAs(t testing.TB, gid uint32, bin, log string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, bin: bin, args: args, log: log, gid: &gid}
	p.Restart()
	t.Cleanup(p.Kill)
	return p
}

// Restart starts the process again (after Kill) with the same arguments.
func (p *Proc) Restart() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if p.gid != nil {
		// Go sets the death signal after the credentials, which would
		// otherwise clear it.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(os.Getuid()), Gid: *p.gid, NoSetGroups: true}
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("proctest: start %s: %v", p.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Exited is closed when the current run of the process has ended.
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// FreePorts returns n loopback ports held for the test process until it
// exits.
//
// A port learnt by listening on port 0 and closing again is free only for a
// moment: until the server given it binds it, an outgoing connection or a
// listener of this or another test process may be handed the same port, and
// a server that cannot bind its port never becomes ready. So these ports
// come from outside the kernel's ephemeral range (which neither a listen on
// port 0 nor a connect ever hands out), are checked free by binding them,
// and are locked against every other test process by an flock on a file per
// port in the temporary directory, held until this process exits. A server
// stopped and started again finds its port still its own.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := reservePorts(n)
	if err != nil {
		t.Fatalf("proctest: %v", err)
	}
	return ports
}

// FreeAddr returns a loopback address ("127.0.0.1:port") on a port of
// FreePorts.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePorts(t, 1)[0])
}

// held keeps the lock files of the ports handed out, open until the process
// exits.
var held struct {
	sync.Mutex
	files []*os.File
}

// lockDir holds the ports' lock files: in the temporary directory of the
// process as it started, shared by every test process of a user, and not
// where a test that sets TMPDIR would look for files of its own.
var lockDir = filepath.Join(os.TempDir(), fmt.Sprintf("sdevents-test-ports-%d", os.Getuid()))

func reservePorts(n int) ([]int, error) {
	held.Lock()
	defer held.Unlock()
	lo, hi := reservableRange()
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("port locks: %w", err)
	}
	size := hi - lo
	start := rand.IntN(size)
	var ports []int
	for i := 0; i < size && len(ports) < n; i++ {
		port := lo + (start+i)%size
		f, ok := lockPort(lockDir, port)
		if !ok {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			f.Close()
			continue
		}
		l.Close()
		held.files = append(held.files, f)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("no %d free ports in %d-%d", n, lo, hi-1)
	}
	return ports, nil
}

// lockPort takes the lock of port, if no other process holds it.
func lockPort(dir string, port int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// reservableRange is the larger of the port ranges below and above the
// kernel's ephemeral range, leaving the well-known and registered ports
// below 20000 alone: [lo, hi).
func reservableRange() (lo, hi int) {
	elo, ehi := 32768, 60999 // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			a, errA := strconv.Atoi(f[0])
			b, errB := strconv.Atoi(f[1])
			if errA == nil && errB == nil {
				elo, ehi = a, b
			}
		}
	}
	below, above := max(0, elo-20000), 65535-ehi
	if below >= above {
		return 20000, elo
	}
	return ehi + 1, 65536
}
