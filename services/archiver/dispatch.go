package archiver

import (
	"context"
	"slices"
	"sync"
)

// job is one unit of work for a worker: an image of a task result (from
// INGRESS or a due retry) or an operator's retry request.
type job struct {
	account string
	// host is the source host, for the per-host limit ("" = no limit).
	host string
	// run does the work. It returns nil when the job did its part (the
	// image is settled or handed to the retry schedule) and an error when
	// the message it came from must be delivered again.
	run func(ctx context.Context) error
	// msg is the message the job belongs to.
	msg *held
}

// dispatcher hands a replica's queued jobs to its workers, fairly:
//
//   - one FIFO queue per account, served round-robin, so that an account's
//     backlog delays another account's job by at most one job per account
//     with work queued (among the messages the replica holds);
//   - at most perHost jobs at a time per source host, so that slow sources
//     on one host leave the other workers to everyone else.
//
// It holds what the intakes admitted, which they bound (see intake). Its
// methods are safe for concurrent use.
type dispatcher struct {
	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) whenever a job may have become takeable
	queues  map[string][]*job
	ring    []string // accounts with queued jobs, in round-robin order
	next    int      // index in ring of the account served next
	busy    map[string]int
	perHost int
	closed  bool
}

func newDispatcher(perHost int) *dispatcher {
	return &dispatcher{
		changed: make(chan struct{}),
		queues:  map[string][]*job{},
		busy:    map[string]int{},
		perHost: max(perHost, 1),
	}
}

// broadcast wakes every waiting worker; the caller holds mu.
func (d *dispatcher) broadcast() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// add queues jobs behind the other jobs of their accounts. It returns false,
// queueing nothing, once the dispatcher is closed.
func (d *dispatcher) add(jobs []*job) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	for _, j := range jobs {
		if _, ok := d.queues[j.account]; !ok {
			d.ring = append(d.ring, j.account)
		}
		d.queues[j.account] = append(d.queues[j.account], j)
	}
	d.broadcast()
	return true
}

// take blocks until a job may run and returns it, counted as running on its
// host until done is called. It returns false when the dispatcher is
// closed or ctx ends.
func (d *dispatcher) take(ctx context.Context) (*job, bool) {
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, false
		}
		if j := d.pick(); j != nil {
			if j.host != "" {
				d.busy[j.host]++
			}
			d.mu.Unlock()
			return j, true
		}
		wait := d.changed
		d.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// pick removes and returns the next job that may run: the first one whose
// host is under its limit in the queue of the next account in turn. The
// caller holds mu.
func (d *dispatcher) pick() *job {
	n := len(d.ring)
	for i := range n {
		k := (d.next + i) % n
		acct := d.ring[k]
		q := d.queues[acct]
		qi := slices.IndexFunc(q, func(j *job) bool { return j.host == "" || d.busy[j.host] < d.perHost })
		if qi < 0 {
			continue
		}
		j := q[qi]
		q = slices.Delete(q, qi, qi+1)
		if len(q) > 0 {
			d.queues[acct] = q
			d.next = (k + 1) % n
			return j
		}
		delete(d.queues, acct)
		d.ring = slices.Delete(d.ring, k, k+1)
		d.next = 0
		if len(d.ring) > 0 {
			d.next = k % len(d.ring)
		}
		return j
	}
	return nil
}

// done marks a job taken with take as finished.
func (d *dispatcher) done(j *job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if j.host != "" {
		if d.busy[j.host]--; d.busy[j.host] <= 0 {
			delete(d.busy, j.host)
		}
	}
	d.broadcast()
}

// close stops the dispatcher: take returns false from now on, add queues
// nothing. It returns the jobs that were queued and never taken.
func (d *dispatcher) close() []*job {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var left []*job
	for _, acct := range d.ring {
		left = append(left, d.queues[acct]...)
	}
	d.queues, d.ring = map[string][]*job{}, nil
	d.broadcast()
	return left
}
