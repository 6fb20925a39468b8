package sns_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/sns"
)

// slowCertServer is a TLS server on loopback that never answers: every
// request is held until its client goes away. It counts requests (in all
// and held) and connections (open and at their peak).
type slowCertServer struct {
	srv                *httptest.Server
	caPEM              []byte
	requests, inflight atomic.Int64
	conns, peakConns   atomic.Int64
	release            chan struct{}
}

func newSlowCertServer(t *testing.T) *slowCertServer {
	t.Helper()
	p := newTLSPKI(t)
	s := &slowCertServer{caPEM: p.caPEM, release: make(chan struct{})}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
	}))
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			raise(&s.peakConns, s.conns.Add(1))
		case http.StateClosed, http.StateHijacked:
			s.conns.Add(-1)
		}
	}
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}}
	s.srv.StartTLS()
	t.Cleanup(func() {
		close(s.release)
		s.srv.Close()
	})
	return s
}

// raise sets peak to v if v is larger.
func raise(peak *atomic.Int64, v int64) {
	for {
		p := peak.Load()
		if v <= p || peak.CompareAndSwap(p, v) {
			return
		}
	}
}

// TestCertFetchesBounded names 2,000 different certificate URLs on a trusted
// host that never answers, all at once. While the callers wait, at most
// MaxFetches downloads reach the host, the cache holds at most
// MaxCacheEntries entries (the callers beyond are refused at once), and when
// the callers give up (clients hanging up) every fetch is cancelled: the
// host sees its requests end, the cache empties and the goroutines return to
// their number before. It counts goroutines, so it does not run in parallel.
func TestCertFetchesBounded(t *testing.T) {
	srv := newSlowCertServer(t)
	host := srv.srv.Listener.Addr().String()
	v, err := sns.NewVerifier(sns.Config{
		TopicARNs:    []string{testTopic},
		ExtraHosts:   []string{host},
		ExtraCAPEM:   append(append([]byte(nil), srv.caPEM...), signingCA(t).pem...),
		Now:          func() time.Time { return msgTime },
		FetchTimeout: time.Hour, // only the callers' leaving can end a fetch
	})
	if err != nil {
		t.Fatal(err)
	}
	signed := note(t, "https://"+host+testCertPath)
	const callers = 2000
	baseline := runtime.NumGoroutine()

	ctx, hangUp := context.WithCancel(context.Background())
	defer hangUp()
	var (
		wg       sync.WaitGroup
		returned atomic.Int64
		mu       sync.Mutex
		errs     []error
	)
	for i := range callers {
		e := signed
		e.SigningCertURL = fmt.Sprintf("https://%s/SimpleNotificationService-%x.pem", host, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := v.Verify(ctx, e)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			returned.Add(1)
		}()
	}
	waiting := int64(callers - sns.MaxCacheEntries)
	waitFor(t, func() bool {
		return returned.Load() == waiting && srv.inflight.Load() == sns.MaxFetches
	}, func() string {
		return fmt.Sprintf("%d of %d callers refused, %d downloads held by the host (want %d and %d); cache peak %d, %d connections, %d goroutines",
			returned.Load(), callers, srv.inflight.Load(), waiting, sns.MaxFetches, sns.CachePeak(v), srv.peakConns.Load(), runtime.NumGoroutine())
	})
	t.Logf("while waiting: %d goroutines (baseline %d), %d requests and %d connections at the host, %d cache entries",
		runtime.NumGoroutine(), baseline, srv.requests.Load(), srv.conns.Load(), sns.CacheLen(v))
	if got := srv.requests.Load(); got != sns.MaxFetches {
		t.Errorf("%d downloads reached the host, want %d", got, sns.MaxFetches)
	}
	if got := srv.peakConns.Load(); got > sns.MaxFetches {
		t.Errorf("%d connections to the host at once, want at most %d", got, sns.MaxFetches)
	}
	if got := sns.CachePeak(v); got > sns.MaxCacheEntries {
		t.Errorf("cache held %d entries, want at most %d", got, sns.MaxCacheEntries)
	}

	hangUp()
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, sns.ErrCertFetch) {
			t.Fatalf("err = %v, want ErrCertFetch", err)
		}
	}
	waitFor(t, func() bool {
		return srv.inflight.Load() == 0 && sns.CacheLen(v) == 0 && runtime.NumGoroutine() <= baseline+goroutineSlack
	}, func() string {
		return fmt.Sprintf("after the callers left: %d downloads still held by the host, %d cache entries, %d goroutines (baseline %d)",
			srv.inflight.Load(), sns.CacheLen(v), runtime.NumGoroutine(), baseline)
	})
	t.Logf("after the callers left: %d goroutines (baseline %d), %d requests in all, cache peak %d",
		runtime.NumGoroutine(), baseline, srv.requests.Load(), sns.CachePeak(v))
}

// goroutineSlack allows for goroutines that outlive a test's work by design:
// a connection the transport keeps idle (two goroutines at each end).
const goroutineSlack = 10

// waitFor polls cond until it holds, failing with state() after two
// minutes (a bound for a loaded machine, not a timing assertion).
func waitFor(t *testing.T, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(state())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
