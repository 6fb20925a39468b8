package archiver

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestDispatcherFairness: accounts take turns whatever their backlog, and
// a host at its limit does not hold up the jobs of other hosts.
func TestDispatcherFairness(t *testing.T) {
	t.Parallel()
	jobs := func(account, host string, n int) []*job {
		var js []*job
		for i := range n {
			js = append(js, &job{account: account, host: host, msg: &held{tally: tally{task: fmt.Sprintf("%s%s%d", account, host, i)}}})
		}
		return js
	}
	name := func(j *job) string { return j.msg.tally.task }

	t.Run("round-robin", func(t *testing.T) {
		d := newDispatcher(100)
		d.add(jobs("a", "h1", 5))
		d.add(jobs("b", "h1", 1))
		d.add(jobs("c", "h2", 2))
		var order []string
		for range 8 {
			j, ok := d.take(t.Context())
			if !ok {
				t.Fatal("closed")
			}
			order = append(order, name(j))
			d.done(j)
		}
		if got := strings.Join(order, " "); got != "ah10 bh10 ch20 ah11 ch21 ah12 ah13 ah14" {
			t.Fatalf("order %s", got)
		}
	})

	t.Run("per-host limit", func(t *testing.T) {
		d := newDispatcher(2)
		d.add(jobs("a", "slow", 4))
		d.add(jobs("a", "fast", 1))
		d.add(jobs("b", "", 1)) // no host: no limit
		var got []string
		for range 4 {
			j, _ := d.take(t.Context())
			got = append(got, name(j)) // never done: all stay running
		}
		if s := strings.Join(got, " "); s != "aslow0 b0 aslow1 afast0" {
			t.Fatalf("taken %s: want two of the slow host, then the others", s)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if j, ok := d.take(ctx); ok {
			t.Fatalf("took %s past the host limit", name(j))
		}
		left := d.close()
		if len(left) != 2 {
			t.Fatalf("close returned %d queued jobs, want 2", len(left))
		}
		if _, ok := d.take(t.Context()); ok || d.add(jobs("c", "", 1)) {
			t.Fatal("a closed dispatcher still works")
		}
	})
}
