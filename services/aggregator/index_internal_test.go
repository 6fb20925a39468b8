package aggregator

import (
	"testing"
	"time"
)

// TestIndexStallIsTold: the follower is taken for stuck only when it has
// read nothing for stallAfter while the aggregator consumer has delivered a
// message beyond it, and not while reading is paused on purpose.
func TestIndexStallIsTold(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, c := range []struct {
		name             string
		pos, delivered   uint64
		quietFor         time.Duration
		throttled, stuck bool
	}{
		{name: "behind and quiet", pos: 10, delivered: 11, quietFor: stallAfter, stuck: true},
		{name: "behind, quiet a moment", pos: 10, delivered: 11, quietFor: stallAfter - time.Second},
		{name: "caught up and quiet", pos: 11, delivered: 11, quietFor: time.Hour},
		{name: "nothing delivered yet", pos: 0, delivered: 0, quietFor: time.Hour},
		{name: "paused for its window", pos: 10, delivered: 500, quietFor: time.Hour, throttled: true},
	} {
		x := &index{pos: c.pos, delivered: c.delivered, movedAt: now.Add(-c.quietFor), throttled: c.throttled}
		if got := x.stalled(now); got != c.stuck {
			t.Errorf("%s: stalled %v, want %v", c.name, got, c.stuck)
		}
	}
}

// TestIndexWatchStopsAStuckFollower: the watch stops a follower that is
// stuck, so that run re-creates it from where it stopped.
func TestIndexWatchStopsAStuckFollower(t *testing.T) {
	t.Parallel()
	x := &index{pos: 1, delivered: 2, movedAt: time.Now().Add(-stallAfter)}
	stopped := make(chan struct{})
	go x.watchStall(t.Context(), func() { close(stopped) })
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("a stuck follower was not stopped")
	}
}
