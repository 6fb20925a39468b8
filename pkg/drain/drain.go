// Package drain is the rule by which every service's Run stops: when its
// context ends, Run stops taking work (pulls, subscriptions), lets the work
// in flight finish for at most a limit, then cancels what is left, waits for
// it to return, and returns. Work cancelled that way is not acknowledged:
// JetStream delivers its message again, to another replica or after the
// restart. The binary gives every service the same limit, half of
// shutdown_timeout (docs/design.md, "Shutdown").
package drain

import (
	"time"
)

// DefaultLimit is the drain limit of a service whose configuration leaves
// it zero.
const DefaultLimit = 15 * time.Second

// Wait calls the waits in turn, each blocking until a part of the work in
// flight is done, under one limit that starts now. When the limit passes
// first, Wait calls cancel, which must make the work return soon, and waits
// for the rest. It reports whether everything finished within the limit.
// Wait blocks until every wait has returned.
func Wait(limit time.Duration, cancel func(), waits ...func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, w := range waits {
			w()
		}
	}()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		cancel()
		<-done
		return false
	}
}
