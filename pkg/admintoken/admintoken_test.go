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
	c := admintoken.New("the-token", admintoken.NewBrake(func() time.Time { return now }))
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
		if _, err := check(fmt.Sprintf("192.0.2.1:%d", 2000+i), "guess"); !errors.Is(err, admintoken.ErrWrong) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	retry, err := check("192.0.2.1:3000", "the-token")
	if !errors.Is(err, admintoken.ErrTooManyFailures) || retry != "51" {
		t.Fatalf("after %d guesses: %v, Retry-After %q; want ErrTooManyFailures and 51 s", admintoken.MaxFailures, err, retry)
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

// TestClient: attempts count per IPv4 address and per IPv6 /64 network,
// whatever the port or the zone; an IPv4-mapped IPv6 address is its IPv4
// address.
func TestClient(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"192.0.2.1:1000":             "192.0.2.1",
		"[::ffff:192.0.2.1]:1000":    "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:1":   "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:1":        "2001:db8:1:3::/64",
		"[fe80::1%eth0]:80":          "fe80::/64",
		"[::1]:8080":                 "::/64",
		"192.0.2.7":                  "192.0.2.7",
		"not an address":             "not an address",
	} {
		_, r := request(addr)
		if got := admintoken.Client(r); got != want {
			t.Errorf("Client(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestBrakeCountsPerIPv6Network: addresses in one /64 share the limit;
// another /64 has its own.
func TestBrakeCountsPerIPv6Network(t *testing.T) {
	t.Parallel()
	c := admintoken.New("the-token", nil)
	for i := range admintoken.MaxFailures {
		w, r := request(fmt.Sprintf("[2001:db8:0:1:%x::1]:1000", i+1))
		if err := c.Check(w, r, "guess"); !errors.Is(err, admintoken.ErrWrong) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	w, r := request("[2001:db8:0:1:ffff:ffff:ffff:ffff]:2000")
	if err := c.Check(w, r, "the-token"); !errors.Is(err, admintoken.ErrTooManyFailures) {
		t.Fatalf("another address of the /64 after %d guesses: %v, want ErrTooManyFailures", admintoken.MaxFailures, err)
	}
	if err := c.Allow(w, r); !errors.Is(err, admintoken.ErrTooManyFailures) || w.Header().Get("Retry-After") == "" {
		t.Fatalf("Allow: %v, Retry-After %q", err, w.Header().Get("Retry-After"))
	}
	w, r = request("[2001:db8:0:2::1]:2000")
	if err := c.Check(w, r, "the-token"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
}

// TestBrakeIsShared: two checkers on one brake (the operator API and the
// console) count together.
func TestBrakeIsShared(t *testing.T) {
	t.Parallel()
	b := admintoken.NewBrake(nil)
	api, console := admintoken.New("the-token", b), admintoken.New("the-token", b)
	for i := range admintoken.MaxFailures {
		c := api
		if i%2 == 1 {
			c = console
		}
		w, r := request("192.0.2.5:1000")
		if err := c.Check(w, r, "guess"); !errors.Is(err, admintoken.ErrWrong) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	for name, c := range map[string]*admintoken.Checker{"api": api, "console": console} {
		w, r := request("192.0.2.5:1000")
		if err := c.Check(w, r, "the-token"); !errors.Is(err, admintoken.ErrTooManyFailures) {
			t.Errorf("%s after %d guesses split between both: %v, want ErrTooManyFailures", name, admintoken.MaxFailures, err)
		}
	}
}

// TestAllowCountsNothing: Allow refuses a braked client and lets the others
// through without counting them.
func TestAllowCountsNothing(t *testing.T) {
	t.Parallel()
	c := admintoken.New("the-token", nil)
	for range 3 * admintoken.MaxFailures {
		w, r := request("192.0.2.6:1000")
		if err := c.Allow(w, r); err != nil {
			t.Fatalf("Allow: %v", err)
		}
	}
	for i := range admintoken.MaxFailures {
		w, r := request("192.0.2.6:1000")
		if err := c.Check(w, r, "guess"); !errors.Is(err, admintoken.ErrWrong) {
			t.Fatalf("guess %d after Allow: %v", i, err)
		}
	}
}

// TestBrakeTableFull: when every remembered client is still within its
// window, new clients share one overflow entry, so a guesser with many
// addresses gets MaxFailures more tries in all, not per address; a
// remembered client keeps its own count.
func TestBrakeTableFull(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	c := admintoken.New("the-token", admintoken.NewBrake(func() time.Time { return now }))
	addr := func(i int) string { return fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255) }
	for i := range admintoken.MaxTracked {
		w, r := request(addr(i))
		if err := c.Check(w, r, "guess"); !errors.Is(err, admintoken.ErrWrong) {
			t.Fatalf("filling, %d: %v", i, err)
		}
	}
	for i := range admintoken.MaxFailures {
		w, r := request(addr(admintoken.MaxTracked + i))
		if err := c.Check(w, r, "guess"); !errors.Is(err, admintoken.ErrWrong) {
			t.Fatalf("overflow guess %d: %v", i, err)
		}
	}
	w, r := request(addr(admintoken.MaxTracked + admintoken.MaxFailures))
	if err := c.Check(w, r, "guess"); !errors.Is(err, admintoken.ErrTooManyFailures) {
		t.Fatalf("new address with a full table after %d overflow guesses: %v", admintoken.MaxFailures, err)
	}
	w, r = request(addr(0))
	if err := c.Check(w, r, "the-token"); err != nil {
		t.Fatalf("a remembered address with one failure: %v", err)
	}
	// Once the window has passed, the table makes room again.
	now = now.Add(admintoken.Window)
	w, r = request(addr(admintoken.MaxTracked + admintoken.MaxFailures))
	if err := c.Check(w, r, "the-token"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}
