package drain_test

import (
	"sync"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/drain"
)

// TestWaitFinishedWork: work that finishes is waited for in full, and
// cancel is not called.
func TestWaitFinishedWork(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Go(func() { <-release })
	go close(release)
	if !drain.Wait(time.Hour, func() { t.Error("cancel called for work that finished") }, wg.Wait) {
		t.Fatal("Wait reported the limit passed")
	}
}

// TestWaitCancelsAtTheLimit: work that does not finish by itself is
// cancelled when the limit passes, and Wait returns only once it returned.
func TestWaitCancelsAtTheLimit(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	var returned bool
	var wg sync.WaitGroup
	wg.Go(func() { <-stop; returned = true })
	if drain.Wait(time.Millisecond, func() { close(stop) }, func() {}, wg.Wait) {
		t.Fatal("Wait reported work that never finished by itself as finished")
	}
	if !returned {
		t.Fatal("Wait returned before the cancelled work did")
	}
}
