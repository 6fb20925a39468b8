package proctest

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// TestFreePortsAreHeld checks the three promises of FreePorts: the ports
// are distinct, outside the kernel's ephemeral range, free to bind, and
// locked against any other taker (an flock conflicts between open files,
// whichever process opened them).
func TestFreePortsAreHeld(t *testing.T) {
	ports := append(FreePorts(t, 5), FreePorts(t, 5)...)
	lo, hi := reservableRange()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice: %v", p, ports)
		}
		seen[p] = true
		if p < lo || p >= hi {
			t.Errorf("port %d outside %d-%d", p, lo, hi-1)
		}
		if f, ok := lockPort(lockDir, p); ok {
			f.Close()
			t.Errorf("port %d: its lock was free to take", p)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Errorf("port %d: %v", p, err)
			continue
		}
		l.Close()
	}
}

// TestReservableRangeAvoidsEphemeralPorts checks the range against the
// kernel's: a listen on port 0 is given a port outside it.
func TestReservableRangeAvoidsEphemeralPorts(t *testing.T) {
	lo, hi := reservableRange()
	if hi-lo < 1000 {
		t.Fatalf("range %d-%d too small", lo, hi-1)
	}
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p >= lo && p < hi {
			t.Fatalf("the kernel handed out port %d, inside %d-%d", p, lo, hi-1)
		}
	}
}

// TestFreePortsLeaveTMPDIRAlone: a test that points TMPDIR at a directory
// to watch finds no lock file of FreePorts there.
func TestFreePortsLeaveTMPDIRAlone(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	FreePorts(t, 2)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("FreePorts wrote to TMPDIR: %v", entries)
	}
}
