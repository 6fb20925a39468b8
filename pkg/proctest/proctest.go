// Package proctest runs the subprocesses of tests that kill things: a
// process starts with its output appended to a log file, dies by SIGKILL
// (never a clean stop) and can start again with the same arguments. Every
// process is also killed when the test process dies, and when the test ends.
//
// Only tests import it. It runs commands on this machine and nothing else.
package proctest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// FreePorts returns n loopback ports that were free a moment ago.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
