package admintoken_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/admintoken"
	"github.com/sdevents/sdevents/pkg/httpserver"
)

func request(addr string) (*httptest.ResponseRecorder, *http.Request) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = addr
	return httptest.NewRecorder(), r
}

// TestBrake: wrong tokens are counted per peer address (not per port, not
// per forwarded-for header); at MaxFailures the address is refused, even
// with the right token, until Window after its first failure.
func TestBrake(t *testing.T) {
	now := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	c := admintoken.New("the-token", func() time.Time { return now })
	check := func(addr, token string) (string, error) {
		w, r := request(addr)
		r.Header.Set("X-Forwarded-For", fmt.Sprintf("10.0.0.%d", now.Nanosecond()%250))
		err := c.Check(w, r, token)
		return w.Header().Get("Retry-After"), err
	}
	if _, err := check("192.0.2.1:1000", "the-token"); err != nil {
		t.Fatalf("right token: %v", err)
	}
	for i := range admintoken.MaxFailures {
		now = now.Add(time.Second)
		if _, err := check(fmt.Sprintf("192.0.2.1:%d", 2000+i), "guess"); !errors.Is(err, admintoken.ErrWrong) || httpserver.StatusOf(err) != http.StatusUnauthorized {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	retry, err := check("192.0.2.1:3000", "the-token")
	if !errors.Is(err, admintoken.ErrTooManyFailures) || httpserver.StatusOf(err) != http.StatusTooManyRequests || retry != "51" {
		t.Fatalf("after %d guesses: %v, Retry-After %q; want 429 and 51 s", admintoken.MaxFailures, err, retry)
	}
	if _, err := check("192.0.2.2:1000", "the-token"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	now = now.Add(51 * time.Second)
	if _, err := check("192.0.2.1:4000", "the-token"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// TestEqual compares whole tokens only.
func TestEqual(t *testing.T) {
	c := admintoken.New("the-token", nil)
	for token, want := range map[string]bool{"the-token": true, "the-token ": false, "the-toke": false, "": false} {
		if got := c.Equal(token); got != want {
			t.Errorf("Equal(%q) = %v", token, got)
		}
	}
}

// TestConcurrentGuesses: guesses sent at once cannot slip past the count:
// at most MaxFailures of them are compared, the others are refused.
func TestConcurrentGuesses(t *testing.T) {
	c := admintoken.New("the-token", nil)
	const n = 200
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			w, r := request(fmt.Sprintf("192.0.2.9:%d", 1000+i))
			errs <- c.Check(w, r, "guess")
		})
	}
	wg.Wait()
	close(errs)
	var wrong, refused int
	for err := range errs {
		switch {
		case errors.Is(err, admintoken.ErrWrong):
			wrong++
		case errors.Is(err, admintoken.ErrTooManyFailures):
			refused++
		default:
			t.Errorf("unexpected %v", err)
		}
	}
	if wrong != admintoken.MaxFailures || refused != n-admintoken.MaxFailures {
		t.Fatalf("%d compared and wrong, %d refused; want %d and %d", wrong, refused, admintoken.MaxFailures, n-admintoken.MaxFailures)
	}
}
