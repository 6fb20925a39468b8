package sns_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/sns"
)

// TestCacheOneFetchForBurst: 50 concurrent verifications of messages naming
// the same certificate URL cost exactly one fetch.
func TestCacheOneFetchForBurst(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	cert := makeCert(t, certSpec{})
	release := make(chan struct{})
	s.handle(testCertPath, func(w http.ResponseWriter, _ *http.Request) {
		<-release // hold the fetch until every caller is waiting on it
		_, _ = w.Write(cert)
	})
	v := s.verifier(t, testTopic)
	const n = 50
	msgs := make([]sns.Envelope, n)
	for i := range msgs {
		msgs[i] = note(t, awsCertURL)
	}
	var (
		wg      sync.WaitGroup
		started atomic.Int64
		errs    = make(chan error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Add(1)
			errs <- v.Verify(context.Background(), msgs[i])
		}()
	}
	for started.Load() < n || s.hits.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the stragglers reach the cache
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := s.hits.Load(); got != 1 {
		t.Fatalf("%d fetches, want 1", got)
	}
	// And later messages are served from the cache.
	if err := v.Verify(context.Background(), note(t, awsCertURL)); err != nil || s.hits.Load() != 1 {
		t.Fatalf("cached: err = %v, fetches = %d", err, s.hits.Load())
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestCacheExpiry: failures are remembered for ErrorTTL only, certificates
// for CacheTTL.
func TestCacheExpiry(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	cert := makeCert(t, certSpec{})
	var fail atomic.Bool
	fail.Store(true)
	s.handle(testCertPath, func(w http.ResponseWriter, _ *http.Request) {
		if fail.Load() {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(cert)
	})
	clock := &fakeClock{now: msgTime}
	cfg := s.config(testTopic)
	cfg.Now = clock.Now
	cfg.ErrorTTL = 5 * time.Second
	cfg.CacheTTL = time.Hour
	v, err := sns.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	verify := func() error { return v.Verify(context.Background(), note(t, awsCertURL)) }

	if err := verify(); !errors.Is(err, sns.ErrCertFetch) {
		t.Fatalf("err = %v, want ErrCertFetch", err)
	}
	fail.Store(false)
	if err := verify(); !errors.Is(err, sns.ErrCertFetch) || s.hits.Load() != 1 {
		t.Fatalf("within ErrorTTL: err = %v, fetches = %d; want the cached failure", err, s.hits.Load())
	}
	clock.Add(5 * time.Second)
	if err := verify(); err != nil || s.hits.Load() != 2 {
		t.Fatalf("after ErrorTTL: err = %v, fetches = %d", err, s.hits.Load())
	}
	clock.Add(59 * time.Minute)
	if err := verify(); err != nil || s.hits.Load() != 2 {
		t.Fatalf("within CacheTTL: err = %v, fetches = %d", err, s.hits.Load())
	}
	clock.Add(time.Minute)
	if err := verify(); err != nil || s.hits.Load() != 3 {
		t.Fatalf("after CacheTTL: err = %v, fetches = %d", err, s.hits.Load())
	}
}

// TestCacheWaiterCancel: a caller whose context ends stops waiting, while
// the shared fetch completes for the caller still waiting.
func TestCacheWaiterCancel(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	cert := makeCert(t, certSpec{})
	release := make(chan struct{})
	s.handle(testCertPath, func(w http.ResponseWriter, _ *http.Request) {
		<-release
		_, _ = w.Write(cert)
	})
	v := s.verifier(t, testTopic)
	other := make(chan error, 1)
	go func() { other <- v.Verify(context.Background(), note(t, awsCertURL)) }()
	poll(t, "the fetch reaches the server", func() bool { return s.hits.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Verify(ctx, note(t, awsCertURL)) }()
	cancel()
	if err := <-done; !errors.Is(err, sns.ErrCertFetch) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrCertFetch and context.Canceled", err)
	}
	close(release)
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	if n := s.hits.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

// TestCacheLastWaiterCancels: when the only caller waiting for a fetch gives
// up, the fetch is cancelled (the server sees its request end) and
// forgotten: the next caller fetches afresh.
func TestCacheLastWaiterCancels(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	cert := makeCert(t, certSpec{})
	var hold atomic.Bool
	hold.Store(true)
	var abandoned atomic.Int64
	s.handle(testCertPath, func(w http.ResponseWriter, r *http.Request) {
		if hold.Load() {
			<-r.Context().Done()
			abandoned.Add(1)
			return
		}
		_, _ = w.Write(cert)
	})
	cfg := s.config(testTopic)
	cfg.FetchTimeout = time.Hour // only the waiter's leaving can end the fetch
	v, err := sns.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Verify(ctx, note(t, awsCertURL)) }()
	poll(t, "the fetch reaches the server", func() bool { return s.hits.Load() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, sns.ErrCertFetch) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrCertFetch and context.Canceled", err)
	}
	poll(t, "the server sees the fetch cancelled", func() bool { return abandoned.Load() == 1 })
	hold.Store(false)
	if err := v.Verify(context.Background(), note(t, awsCertURL)); err != nil {
		t.Fatalf("next caller: %v", err)
	}
	if n := s.hits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (the cancelled one is not cached)", n)
	}
}

// poll waits until cond holds, failing the test after a minute (a bound for
// a loaded machine, not a timing assertion).
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestFetchTimeout: a hanging certificate host is a transient failure after
// FetchTimeout.
func TestFetchTimeout(t *testing.T) {
	t.Parallel()
	s := newCertServer(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s.handle(testCertPath, func(http.ResponseWriter, *http.Request) { <-release })
	cfg := s.config(testTopic)
	cfg.FetchTimeout = 50 * time.Millisecond
	v, err := sns.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(context.Background(), note(t, awsCertURL)); !errors.Is(err, sns.ErrCertFetch) {
		t.Fatalf("err = %v, want ErrCertFetch", err)
	}
}
