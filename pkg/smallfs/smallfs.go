// Package smallfs gives tests a small file system of their own to fill: a
// tmpfs mounted on a temporary directory, unmounted when the test ends.
// Mounting needs root (CAP_SYS_ADMIN), which CI has; elsewhere the test is
// skipped with the reason.
//
// Only tests import it.
package smallfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new temporary directory of the
// test and returns its path. It skips the test when the machine does not
// let it mount one.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "smallfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Skipf("smallfs: cannot mount a tmpfs here (%v, uid %d): these tests need root, as CI has", err, os.Getuid())
		}
		t.Fatalf("smallfs: mount tmpfs on %s: %v", dir, err)
	}
	// Lazy: a process of the test may still hold a file open.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("smallfs: unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file in dir until the file system is full, and returns a
// function that removes it again.
func Fill(t testing.TB, dir string) (free func()) {
	t.Helper()
	f, err := os.CreateTemp(dir, "filler-*")
	if err != nil {
		t.Fatalf("smallfs: %v", err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("smallfs: filling %s: %v", dir, err)
	}
	// The last pages: a write smaller than a chunk may still fit.
	for _, err = f.Write(chunk[:512]); err == nil; _, err = f.Write(chunk[:512]) {
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("smallfs: %v", err)
	}
	name := f.Name()
	return func() {
		t.Helper()
		if err := os.Remove(name); err != nil {
			t.Fatalf("smallfs: %v", err)
		}
	}
}
