package console

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/admintoken"
)

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// rawPost sends a POST over a connection of its own — the headers, then the
// body in the background, with its length or chunked when length < 0 — and
// returns the answer's status once the server has closed the connection or
// kept it for another request, with the bytes the server read meanwhile.
// The body is written while the answer is read, as a client that uploads
// without waiting does; the server may answer before it has read it.
func (h *harness) rawPost(path string, hdr map[string]string, length int64, body io.Reader) (status int, read int64) {
	h.t.Helper()
	before := h.read.Load()
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	var head strings.Builder
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: console.test\r\n", path)
	for k, v := range hdr {
		fmt.Fprintf(&head, "%s: %s\r\n", k, v)
	}
	if length >= 0 {
		fmt.Fprintf(&head, "Content-Length: %d\r\n", length)
	} else {
		head.WriteString("Transfer-Encoding: chunked\r\n")
	}
	head.WriteString("\r\n")
	written := make(chan struct{})
	go func() {
		defer close(written)
		if _, err := io.WriteString(conn, head.String()); err != nil {
			return
		}
		if length >= 0 {
			_, _ = io.Copy(conn, body)
			return
		}
		cw := httputil.NewChunkedWriter(conn)
		if _, err := io.Copy(cw, body); err == nil && cw.Close() == nil {
			_, _ = io.WriteString(conn, "\r\n")
		}
	}()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		h.t.Fatalf("POST %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		// Read on to the server's end of the connection: whatever it drains
		// of the body, it has drained by then.
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.Copy(io.Discard, br)
	}
	conn.Close()
	<-written
	return resp.StatusCode, h.read.Load() - before
}

// multipartBody is a multipart form with fields and one file part of size
// bytes.
func multipartBody(fields map[string]string, size int64) (body io.Reader, length int64, contentType string) {
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	_, _ = mw.CreateFormFile("upload", "upload.bin")
	tail := "\r\n--" + mw.Boundary() + "--\r\n"
	length = int64(head.Len()) + size + int64(len(tail))
	return io.MultiReader(&head, io.LimitReader(zeros{}, size), strings.NewReader(tail)), length, mw.FormDataContentType()
}

// watchTempFiles reports whether a multipart temporary file appeared in dir
// while the test ran: it lists dir until the test ends.
func watchTempFiles(t *testing.T, dir string) *atomic.Bool {
	t.Helper()
	var seen atomic.Bool
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				seen.Store(true)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped })
	return &seen
}

// TestFormsTakeNoUpload: every console POST takes a URL-encoded form of at
// most maxFormBytes. A multipart body — the login form's included — is
// refused (415) without being read or written to temporary files; an
// oversized form is 413; a missing CSRF cookie (403) and the brake on
// guessing (429) are answered before the form is read, whatever its size.
// Bytes read are counted on the server's connections: a body with a declared
// length over net/http's drain allowance (256 KiB) is not read at all (the
// headers and the first buffer, < 64 KiB); a chunked one at most as far as
// net/http drains an unread body before closing.
func TestFormsTakeNoUpload(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	h := newHarness(t)
	tempFiles := watchTempFiles(t, tmp)

	const upload = 33 << 20
	const drain = 256 << 10
	loginCSRF := strings.Repeat("c", 24)
	withCSRF := map[string]string{"Cookie": csrfCookie + "=" + loginCSRF}
	urlencoded := func(hdr map[string]string) map[string]string {
		out := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
		for k, v := range hdr {
			out[k] = v
		}
		return out
	}
	bigForm := func(size int) string {
		return url.Values{"csrf": {loginCSRF}, "token": {"guess"}, "pad": {strings.Repeat("x", size)}}.Encode()
	}

	session, _ := h.login()
	var sessionCookieValue string
	for _, ck := range session.Jar.Cookies(mustURL(t, h.srv.URL+"/console/")) {
		if ck.Name == sessionCookie {
			sessionCookieValue = ck.Value
		}
	}
	if sessionCookieValue == "" {
		t.Fatal("no session cookie after login")
	}

	for _, tc := range []struct {
		name     string
		path     string
		hdr      map[string]string
		chunked  bool
		body     func() (io.Reader, int64, string) // body, length, content type ("" = hdr's)
		want     int
		maxRead  int64
		setBrake bool
	}{
		{name: "multipart login", path: "/console/login", hdr: withCSRF, want: http.StatusUnsupportedMediaType, maxRead: 64 << 10,
			body: func() (io.Reader, int64, string) {
				return multipartBody(map[string]string{"csrf": loginCSRF, "token": "guess"}, upload)
			}},
		{name: "multipart login, chunked", path: "/console/login", hdr: withCSRF, chunked: true, want: http.StatusUnsupportedMediaType, maxRead: drain + 64<<10,
			body: func() (io.Reader, int64, string) {
				return multipartBody(map[string]string{"csrf": loginCSRF, "token": "guess"}, upload)
			}},
		{name: "multipart grant with the bearer token", path: "/console/accounts/grant", hdr: bearer, want: http.StatusUnsupportedMediaType, maxRead: 64 << 10,
			body: func() (io.Reader, int64, string) {
				return multipartBody(map[string]string{"account": "_", "credits": "1"}, upload)
			}},
		{name: "JSON logout with a session", path: "/console/logout", hdr: map[string]string{"Cookie": sessionCookie + "=" + sessionCookieValue},
			want: http.StatusUnsupportedMediaType, maxRead: 64 << 10,
			body: func() (io.Reader, int64, string) {
				b := `{"csrf":"x"}`
				return strings.NewReader(b), int64(len(b)), "application/json"
			}},
		{name: "oversized form", path: "/console/login", hdr: urlencoded(withCSRF), want: http.StatusRequestEntityTooLarge, maxRead: 64 << 10,
			body: func() (io.Reader, int64, string) {
				b := bigForm(512 << 10)
				return strings.NewReader(b), int64(len(b)), ""
			}},
		{name: "oversized form, chunked", path: "/console/login", hdr: urlencoded(withCSRF), chunked: true, want: http.StatusRequestEntityTooLarge, maxRead: drain + 64<<10,
			body: func() (io.Reader, int64, string) {
				b := bigForm(1 << 20)
				return strings.NewReader(b), int64(len(b)), ""
			}},
		{name: "login without the CSRF cookie, chunked", path: "/console/login", hdr: urlencoded(nil), chunked: true, want: http.StatusForbidden, maxRead: drain + 64<<10,
			body: func() (io.Reader, int64, string) {
				b := bigForm(1 << 20)
				return strings.NewReader(b), int64(len(b)), ""
			}},
		{name: "session form without the CSRF cookie, chunked", path: "/console/logout", chunked: true, want: http.StatusForbidden, maxRead: drain + 64<<10,
			hdr: urlencoded(map[string]string{"Cookie": sessionCookie + "=" + sessionCookieValue}),
			body: func() (io.Reader, int64, string) {
				b := bigForm(1 << 20)
				return strings.NewReader(b), int64(len(b)), ""
			}},
		{name: "braked client, chunked", path: "/console/login", hdr: urlencoded(withCSRF), chunked: true, setBrake: true, want: http.StatusTooManyRequests, maxRead: drain + 64<<10,
			body: func() (io.Reader, int64, string) {
				b := bigForm(1 << 20)
				return strings.NewReader(b), int64(len(b)), ""
			}},
	} {
		h.svc.brake.Forget()
		if tc.setBrake {
			for i := range admintoken.MaxFailures {
				if a := h.do(h.client(), http.MethodGet, "/console/jobs", nil, map[string]string{"Authorization": fmt.Sprintf("Bearer guess-%d", i)}); a.status != http.StatusUnauthorized {
					t.Fatalf("%s: guess %d: %d", tc.name, i, a.status)
				}
			}
		}
		body, length, ct := tc.body()
		hdr := map[string]string{}
		for k, v := range tc.hdr {
			hdr[k] = v
		}
		if ct != "" {
			hdr["Content-Type"] = ct
		}
		if tc.chunked {
			length = -1
		}
		status, read := h.rawPost(tc.path, hdr, length, body)
		if status != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, status, tc.want)
		}
		if read > tc.maxRead {
			t.Errorf("%s: the server read %d bytes, want at most %d", tc.name, read, tc.maxRead)
		}
	}
	if tempFiles.Load() {
		t.Error("a multipart body was written to temporary files")
	}

	// A form within the limit still works, by session and by bearer token.
	h.svc.brake.Forget()
	c, csrf := h.login()
	if a := h.do(c, http.MethodPost, "/console/accounts/find", url.Values{"csrf": {csrf}, "account": {"_"}}, nil); a.status != http.StatusSeeOther {
		t.Errorf("find by session: %d %s", a.status, a.body)
	}
	if a := h.do(h.client(), http.MethodPost, "/console/accounts/find", url.Values{"account": {"_"}}, bearer); a.status != http.StatusSeeOther {
		t.Errorf("find by bearer token: %d %s", a.status, a.body)
	}
	// A field in the URL's query does not count as the form's.
	if a := h.do(c, http.MethodPost, "/console/accounts/find?csrf="+url.QueryEscape(csrf), url.Values{"account": {"_"}}, nil); a.status != http.StatusForbidden {
		t.Errorf("CSRF token in the query: %d, want 403", a.status)
	}
}
