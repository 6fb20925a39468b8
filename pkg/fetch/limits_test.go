package fetch_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/fetch"
)

// trickle answers 200 and then sends one byte every interval, until the
// client goes away, never going quiet for longer than the idle timeout.
func trickle(interval time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
				if _, err := w.Write([]byte{0x89}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	}
}

// TestHTTPLimits: a source that keeps sending, too slowly for the idle
// timeout to notice, is cut off by the total deadline or by the minimum
// rate, whichever comes first; both are transient. A source at full speed
// passes both.
func TestHTTPLimits(t *testing.T) {
	t.Parallel()
	img := encode(t, "png", 64, 64)
	_, addr := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/trickle" {
			trickle(50*time.Millisecond)(w, r)
			return
		}
		w.Write(img)
	})
	tests := []struct {
		name    string
		limits  fetch.Limits
		path    string
		wantErr error
	}{
		{"deadline", fetch.Limits{Timeout: 400 * time.Millisecond, MinRate: -1}, "/trickle", fetch.ErrTimeout},
		{"minimum rate", fetch.Limits{Timeout: time.Minute, MinRate: 1 << 10, RateWindow: 300 * time.Millisecond}, "/trickle", fetch.ErrTooSlow},
		{"fast source", fetch.Limits{Timeout: time.Minute, MinRate: 1 << 10, RateWindow: time.Millisecond}, "/a.png", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSource(t, fetch.HTTPConfig{AllowHosts: []string{addr}, ReadTimeout: 10 * time.Second, Limits: tc.limits})
			got, _, err := fetchAll(t.Context(), s, "http://"+addr+tc.path+"?Signature=secret")
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				if string(got) != string(img) {
					t.Fatalf("got %d bytes, want the image", len(got))
				}
				return
			}
			if fetch.IsPermanent(err) || strings.Contains(err.Error(), "secret") {
				t.Fatalf("%v: want a transient error without the query", err)
			}
		})
	}
}

// TestHTTPDeadlineBeforeHeaders: the total deadline also covers the wait
// for the answer.
func TestHTTPDeadlineBeforeHeaders(t *testing.T) {
	t.Parallel()
	_, addr := server(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	s := newSource(t, fetch.HTTPConfig{AllowHosts: []string{addr}, ReadTimeout: time.Minute, Limits: fetch.Limits{Timeout: 300 * time.Millisecond}})
	_, err := s.Open(t.Context(), "http://"+addr+"/a.png")
	if !errors.Is(err, fetch.ErrTimeout) || fetch.IsPermanent(err) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
}

// TestReason: the reasons name the class of a failure and nothing the
// error carries (addresses, paths, server messages).
func TestReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&fetch.StatusError{Code: 403, URL: "http://10.0.0.1/a.png"}, "source answered 403 Forbidden"},
		{fmt.Errorf("fetch http://x/a.png: %w: x resolves to 10.0.0.1", fetch.ErrNotAllowed), "address not allowed"},
		{fmt.Errorf("w: %w", fetch.ErrTooLarge), "over the size cap"},
		{fmt.Errorf("w: %w", fetch.ErrNotImage), "not an image of an accepted type"},
		{fmt.Errorf("w: %w", fetch.ErrTimeout), "took longer than the fetch timeout"},
		{fmt.Errorf("w: %w", fetch.ErrTooSlow), "source slower than the minimum rate"},
		{fmt.Errorf("w: %w", fetch.ErrIdleTimeout), "source stopped sending"},
		{fmt.Errorf("dial tcp 10.1.2.3:80: connection refused"), "source failed"},
		{&net.DNSError{Err: "i/o timeout", Name: "10.1.2.3", IsTimeout: true}, "source timed out"},
		{io.ErrUnexpectedEOF, "source failed"},
	} {
		if got := fetch.Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
