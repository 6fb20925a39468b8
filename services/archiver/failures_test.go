package archiver_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/contract"
)

// TestFailurePaths runs every failure of a source through one archiver:
// permanent failures produce one failed event at the first attempt, a
// server that stalls is retried until it recovers, and one that never
// recovers produces one failed event once the URL's lifetime is over.
func TestFailurePaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.MaxBytes = 256 << 10
	e.cfg.URLLifetime = time.Minute
	good := pngOf(t, 7, 64, 64)
	port := e.images.host[strings.LastIndexByte(e.images.host, ':'):]

	stall := func(healthyAfter int64) http.HandlerFunc {
		var n atomic.Int64
		return func(w http.ResponseWriter, r *http.Request) {
			if healthyAfter < 0 || n.Add(1) <= healthyAfter {
				// Longer than the read timeout (500 ms) before the headers.
				select {
				case <-time.After(2 * time.Second):
				case <-r.Context().Done():
				}
				return
			}
			w.Write(good)
		}
	}
	big := append(append([]byte(nil), good...), make([]byte, 300<<10)...)
	cases := []struct {
		name      string
		url       string
		at        time.Time // event time; zero = now
		stored    bool
		permanent bool
		// dropped: the task-result parser leaves the URL out (longer than
		// taskresult.MaxTextLen), so no image is seen and no event made.
		dropped  bool
		errHas   string
		attempts func(int) bool
	}{
		{name: "expired", url: e.images.handle("/expired.png", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Request has expired", http.StatusForbidden)
		}) + "?Signature=old", permanent: true, errHas: "403", attempts: one},
		{name: "not an image", url: e.images.handle("/page.png", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte("<html><body>Access denied</body></html>"))
		}), permanent: true, errHas: "not an image", attempts: one},
		{name: "over the size cap", url: e.images.handle("/big.png", func(w http.ResponseWriter, r *http.Request) {
			w.Write(big)
		}), permanent: true, errHas: "size cap", attempts: one},
		{name: "over the size cap, undeclared", url: e.images.handle("/big-chunked.png", func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush() // chunked: no Content-Length
			for i := 0; i < len(big); i += 32 << 10 {
				w.Write(big[i:min(i+32<<10, len(big))])
			}
		}), permanent: true, errHas: "size cap", attempts: one},
		{name: "private address not allowed", url: "http://private.test" + port + "/a.png?Signature=s",
			permanent: true, errHas: "not allowed", attempts: one},
		{name: "redirect to a disallowed host", url: e.images.handle("/moved.png", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://evil.test"+port+"/a.png", http.StatusFound)
		}), permanent: true, errHas: "not allowed", attempts: one},
		{name: "redirect to a disallowed literal address", url: e.images.handle("/moved-ip.png", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://10.1.2.3/a.png", http.StatusFound)
		}), permanent: true, errHas: "not allowed", attempts: one},
		{name: "URL over 8 KiB", url: "http://" + e.images.host + "/long.png?Signature=" + strings.Repeat("s", 8<<10),
			dropped: true},
		{name: "slow, then recovers", url: e.images.handle("/slow.png", stall(2)), stored: true,
			attempts: func(n int) bool { return n >= 3 }},
		{name: "5xx, then recovers", url: e.images.handle("/flaky.png", flaky(2, good)), stored: true},
		{name: "slow until it expires", url: e.images.handle("/dead.png", stall(-1)),
			at: time.Now().Add(-time.Minute + 3*time.Second), errHas: "gave up when the source expired",
			attempts: func(n int) bool { return n >= 2 }},
	}
	for _, c := range cases {
		at := c.at
		if at.IsZero() {
			at = time.Now()
		}
		e.publishCallback("a_fail", "inv-"+c.name, at, map[string]any{"success": true, "data": map[string]any{
			"generatedImageId": "g", "url": c.url, "type": "png",
		}})
	}
	e.start()
	want := 0
	for _, c := range cases {
		if !c.dropped {
			want++
		}
	}
	evs := e.waitSettled(want, 60*time.Second)
	byTask := map[string]archiveEvent{}
	for _, ev := range evs {
		id := ev.Stored.TaskID + ev.Failed.TaskID
		if _, dup := byTask[id]; dup {
			t.Errorf("two events for %s", id)
		}
		byTask[id] = ev
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, ok := byTask["inv-"+c.name]
			switch {
			case c.dropped:
				if ok {
					t.Fatalf("an event for an image the parser leaves out: %+v", ev)
				}
				return
			case !ok:
				t.Fatal("no event")
			case ev.stored() != c.stored:
				t.Fatalf("stored=%v, want %v: %+v", ev.stored(), c.stored, ev.Failed)
			case c.stored:
				if ev.Stored.SHA256 != sha(good) {
					t.Errorf("sha %s", ev.Stored.SHA256)
				}
				return
			}
			f := ev.Failed
			if f.Permanent != c.permanent || !strings.Contains(f.Error, c.errHas) {
				t.Errorf("failure %+v: want permanent=%v and error containing %q", f, c.permanent, c.errHas)
			}
			if c.attempts != nil && !c.attempts(f.Attempts) {
				t.Errorf("attempts %d", f.Attempts)
			}
			if strings.Contains(f.Error, "Signature") || strings.Contains(f.SourceURL, "?") {
				t.Errorf("query string leaked: %+v", f)
			}
			// The reason is generic: no address a host resolved to, no
			// URL, no server message (those are in the log).
			for _, leak := range []string{"127.0.0.1", "10.1.2.3", port, "://", "resolves", "Access denied", "Request has expired"} {
				if strings.Contains(f.Error, leak) {
					t.Errorf("reason %q holds %q", f.Error, leak)
				}
			}
			if ev.Subject != contract.SubjectArchiveFailed+"a_fail" || f.Key == "" {
				t.Errorf("subject %s key %q", ev.Subject, f.Key)
			}
		})
	}
	if n := e.images.count("/expired.png"); n != 1 {
		t.Errorf("a permanent failure was fetched %d times", n)
	}
	if n := e.images.count("/long.png"); n != 0 {
		t.Errorf("a URL over the bound was fetched %d times", n)
	}
}

func one(n int) bool { return n == 1 }

// flaky answers 503 n times, then body.
func flaky(n int64, body []byte) http.HandlerFunc {
	var calls atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= n {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write(body)
	}
}

// TestResultsNamingNoImageArchiveNothing: task results whose data names no
// image (data {}, entries without a url) are acknowledged without a fetch
// and without an ARCHIVE event, stored or failed; the image named beside
// them is archived once.
func TestResultsNamingNoImageArchiveNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	at := time.Now()
	e.publishCallback("a_blank", "empty-object", at, map[string]any{"success": true, "data": map[string]any{}})
	e.publishCallback("a_blank", "unnamed", at, map[string]any{"success": true, "data": []any{
		map[string]any{}, map[string]any{"type": "png", "width": 512}, map[string]any{"generatedImageId": "no-url"},
		map[string]any{"generatedImageId": "g", "url": e.images.serve("/named.png", pngOf(t, 5, 8, 8)), "type": "png"},
	}})
	e.publishCallback("a_blank", "empty-url", at, map[string]any{"success": true, "data": map[string]any{"generatedImageId": "", "url": ""}})
	e.start()
	evs := e.waitSettled(1, 30*time.Second)
	if !evs[0].stored() || evs[0].Stored.ImageID != "g" {
		t.Errorf("ARCHIVE holds %+v, want the stored image g alone", evs[0])
	}
	if n := e.streamMsgs(contract.StreamArchiverTimers); n != 0 {
		t.Errorf("%d images wait for a retry, want none", n)
	}
}
