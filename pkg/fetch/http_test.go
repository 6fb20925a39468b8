package fetch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/fetch"
)

// fakeDNS resolves the names it knows; it stands in for a hostile DNS that
// answers with loopback addresses.
type fakeDNS map[string][]netip.Addr

func (f fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[strings.ToLower(host)]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

var loopback = fakeDNS{
	"images.example": {netip.MustParseAddr("127.0.0.1")},
	"rebind.example": {netip.MustParseAddr("::ffff:127.0.0.1")},
	"other.example":  {netip.MustParseAddr("127.0.0.1")},
}

func newSource(t *testing.T, cfg fetch.HTTPConfig) *fetch.HTTPSource {
	t.Helper()
	if cfg.Resolver == nil {
		cfg.Resolver = loopback
	}
	s, err := fetch.NewHTTPSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.CloseIdleConnections)
	return s
}

func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, srv.Listener.Addr().String()
}

func fetchAll(ctx context.Context, s *fetch.HTTPSource, u string) ([]byte, *fetch.Body, error) {
	b, err := s.Open(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	defer b.Close()
	data, err := io.ReadAll(b)
	return data, b, err
}

func TestHTTPOpen(t *testing.T) {
	t.Parallel()
	img := encode(t, "png", 8, 8)
	_, addr := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(img)
	})
	s := newSource(t, fetch.HTTPConfig{AllowHosts: []string{addr}})
	got, b, err := fetchAll(t.Context(), s, "http://"+addr+"/out/a.png?X-Amz-Signature=secret")
	if err != nil || !bytes.Equal(got, img) || b.Size != int64(len(img)) || b.ContentType != "image/png" {
		t.Fatalf("got %d bytes, body %+v, err %v", len(got), b, err)
	}
}

func TestHTTPGuard(t *testing.T) {
	t.Parallel()
	_, addr := server(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	_, port, _ := net.SplitHostPort(addr)
	tests := []struct {
		name    string
		allow   []string
		url     string
		ok      bool
		wantErr error // default ErrNotAllowed
	}{
		{name: "loopback literal refused", url: "http://" + addr + "/x"},
		{name: "loopback literal allowed by host:port", allow: []string{addr}, url: "http://" + addr + "/x", ok: true},
		{name: "allowed host, other port", allow: []string{"127.0.0.1:1"}, url: "http://" + addr + "/x"},
		{name: "allowed by host", allow: []string{"127.0.0.1"}, url: "http://" + addr + "/x", ok: true},
		{name: "name resolving to loopback refused", url: "http://images.example:" + port + "/x"},
		{name: "name resolving to mapped loopback refused", url: "http://rebind.example:" + port + "/x"},
		{name: "name resolving to loopback allowed", allow: []string{"images.example:" + port}, url: "http://images.example:" + port + "/x", ok: true},
		{name: "name allowed case-insensitively", allow: []string{"IMAGES.example"}, url: "http://images.EXAMPLE:" + port + "/x", ok: true},
		{name: "allowing the address does not allow the name", allow: []string{"127.0.0.2"}, url: "http://images.example:" + port + "/x"},
		{name: "localhost refused", url: "http://localhost:" + port + "/x"},
		{name: "IPv6 loopback refused", url: "http://[::1]:" + port + "/x"},
		{name: "private refused before dialling", url: "http://10.1.2.3:" + port + "/x"},
		{name: "unspecified refused", url: "http://0.0.0.0:" + port + "/x"},
		{name: "link-local metadata refused", url: "http://169.254.169.254/latest/meta-data"},
		{name: "ftp unsupported", allow: []string{addr}, url: "ftp://" + addr + "/x", wantErr: fetch.ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := tc.wantErr
			if want == nil && !tc.ok {
				want = fetch.ErrNotAllowed
			}
			s := newSource(t, fetch.HTTPConfig{AllowHosts: tc.allow, ConnectTimeout: 2 * time.Second,
				Resolver: fakeDNS{"images.example": loopback["images.example"], "rebind.example": loopback["rebind.example"],
					"localhost": {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}}})
			got, _, err := fetchAll(t.Context(), s, tc.url)
			if want == nil {
				if err != nil || string(got) != "ok" {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, want) || !fetch.IsPermanent(err) {
				t.Fatalf("err = %v, want %v (permanent)", err, want)
			}
		})
	}
}

func TestHTTPRedirects(t *testing.T) {
	t.Parallel()
	_, target := server(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "target") })
	_, tport, _ := net.SplitHostPort(target)
	_, origin := server(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-target":
			http.Redirect(w, r, "http://"+target+"/img?sig=secret-in-location", http.StatusFound)
		case "/to-name":
			http.Redirect(w, r, "http://other.example:"+tport+"/img?sig=secret-in-location", http.StatusFound)
		case "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		default: // /loop/N
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/loop/"))
			if n == 0 {
				io.WriteString(w, "end of loop")
				return
			}
			http.Redirect(w, r, fmt.Sprintf("/loop/%d", n-1), http.StatusFound)
		}
	})
	tests := []struct {
		name    string
		allow   []string
		path    string
		want    string
		wantErr error
	}{
		{name: "to disallowed literal", path: "/to-target", wantErr: fetch.ErrNotAllowed},
		{name: "to disallowed name", path: "/to-name", wantErr: fetch.ErrNotAllowed},
		{name: "to allowed host", allow: []string{target}, path: "/to-target", want: "target"},
		{name: "to other scheme", path: "/to-file", wantErr: fetch.ErrUnsupported},
		{name: "three redirects", path: "/loop/3", want: "end of loop"},
		{name: "four redirects", path: "/loop/4", wantErr: fetch.ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSource(t, fetch.HTTPConfig{AllowHosts: append([]string{origin}, tc.allow...)})
			got, _, err := fetchAll(t.Context(), s, "http://"+origin+tc.path+"?sig=secret-in-request")
			if tc.wantErr == nil {
				if err != nil || string(got) != tc.want {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !fetch.IsPermanent(err) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error leaks a query string: %v", err)
			}
		})
	}
}

func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	_, addr := server(t, func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.WriteHeader(code)
		io.WriteString(w, "<Error>expired</Error>")
	})
	s := newSource(t, fetch.HTTPConfig{AllowHosts: []string{addr}})
	for code, permanent := range map[int]bool{
		404: true, 403: true, 410: true, 400: true, 401: true,
		503: false, 500: false, 502: false, 429: false, 408: false,
	} {
		_, err := s.Open(t.Context(), fmt.Sprintf("http://%s/%d?Signature=secret", addr, code))
		var se *fetch.StatusError
		if !errors.As(err, &se) || se.Code != code || fetch.IsPermanent(err) != permanent {
			t.Errorf("%d: err = %v, permanent %v, want %v", code, err, fetch.IsPermanent(err), permanent)
			continue
		}
		if strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "/"+strconv.Itoa(code)) {
			t.Errorf("%d: message %q", code, err)
		}
	}
}

func TestHTTPSizeCap(t *testing.T) {
	t.Parallel()
	const max = 1000
	_, addr := server(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		body := bytes.Repeat([]byte{'x'}, n)
		if r.URL.Query().Has("chunked") {
			w.Write(body[:n/2]) // no Content-Length
			w.(http.Flusher).Flush()
			w.Write(body[n/2:])
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(body)
	})
	s := newSource(t, fetch.HTTPConfig{AllowHosts: []string{addr}, MaxBytes: max})
	for _, tc := range []struct {
		path   string
		tooBig bool
	}{
		{"/1000", false}, {"/1001", true}, {"/1000?chunked", false}, {"/1001?chunked", true}, {"/5000000?chunked", true},
	} {
		got, _, err := fetchAll(t.Context(), s, "http://"+addr+tc.path)
		if tc.tooBig {
			if !errors.Is(err, fetch.ErrTooLarge) || !fetch.IsPermanent(err) || len(got) > max {
				t.Errorf("%s: %d bytes, err %v; want ErrTooLarge", tc.path, len(got), err)
			}
			continue
		}
		if err != nil || len(got) != max {
			t.Errorf("%s: %d bytes, %v", tc.path, len(got), err)
		}
	}
}

func TestHTTPTimeouts(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	_, addr := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall-body" {
			w.Header().Set("Content-Length", "1000")
			w.Write([]byte("first bytes"))
			w.(http.Flusher).Flush()
		}
		select { // a server-side stall, until the client gives up
		case <-r.Context().Done():
		case <-release:
		}
	})
	s := newSource(t, fetch.HTTPConfig{AllowHosts: []string{addr}, ReadTimeout: 200 * time.Millisecond})

	start := time.Now()
	_, err := s.Open(t.Context(), "http://"+addr+"/stall-headers")
	if err == nil || fetch.IsPermanent(err) || time.Since(start) > 10*time.Second {
		t.Fatalf("stalled headers: %v after %s, want a transient timeout", err, time.Since(start))
	}

	b, err := s.Open(t.Context(), "http://"+addr+"/stall-body")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if string(got) != "first bytes" || !errors.Is(err, fetch.ErrIdleTimeout) || fetch.IsPermanent(err) {
		t.Fatalf("stalled body: %q, %v; want ErrIdleTimeout", got, err)
	}

	// The caller's context wins over the timeouts and is reported as is.
	ctx, cancel := context.WithCancel(t.Context())
	b, err = s.Open(ctx, "http://"+addr+"/stall-body")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cancel()
	if _, err := io.ReadAll(b); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := newSource(t, fetch.HTTPConfig{AllowHosts: []string{addr}})
	_, err = s.Open(t.Context(), "http://"+addr+"/x?token=secret")
	if err == nil || fetch.IsPermanent(err) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("err = %v, want a transient error without the query", err)
	}
}

func TestNewHTTPSourceBadAllowEntry(t *testing.T) {
	t.Parallel()
	for _, e := range []string{"http://x/", "x:port", "a/b", "x:0", "[::1]:x"} {
		if _, err := fetch.NewHTTPSource(fetch.HTTPConfig{AllowHosts: []string{e}}); err == nil {
			t.Errorf("accepted allow_hosts entry %q", e)
		}
	}
	for _, e := range []string{"x.example", "x.example:8080", "127.0.0.1", "127.0.0.1:9000", "::1", "[::1]", "[::1]:8080", " spaced.example "} {
		if _, err := fetch.NewHTTPSource(fetch.HTTPConfig{AllowHosts: []string{e}}); err != nil {
			t.Errorf("refused allow_hosts entry %q: %v", e, err)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("https://user:pw@oss.example.com/a/b.png?Expires=1&Signature=s#frag")
	if got := fetch.Redact(u); got != "https://oss.example.com/a/b.png" {
		t.Fatalf("Redact = %s", got)
	}
}
