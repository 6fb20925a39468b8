package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/archiveretry"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
	"github.com/sdevents/sdevents/pkg/natstest"
)

func (h *harness) publishFailure(image string, attempts int) uint64 {
	h.t.Helper()
	return h.publish(contract.SubjectArchiveFailed+testAccount, event.Meta{ID: "ar-" + image, Source: "/sdevents/archiver", Type: "sd.archive.failed", Subject: testAccount},
		contract.ArchiveFailed{Account: testAccount, TaskID: "inv-1", ImageID: image, SourceURL: "https://img.example.com/" + image + ".png",
			Key: testAccount + "/2026/" + image + ".png", Error: "fetch: 404 Not Found", Attempts: attempts, Permanent: true,
			FailedAt: time.Now().UTC()}, nil)
}

// TestArchiveFailuresAndRetry: failures are listed with their reasons and
// attempts; Retry publishes one request per failure, however often it is
// clicked, and says so when no stream would store it.
func TestArchiveFailuresAndRetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c, csrf := h.login()
	h.publish(contract.SubjectArchiveStored+testAccount, event.Meta{ID: "stored-1"}, contract.ArchiveStored{Account: testAccount, ImageID: "ok"}, nil)
	f1 := h.publishFailure("g-bad", 3)
	f2 := h.publishFailure("g-worse", 7)
	// An archiver that left a query string in its error is redacted too.
	h.publish(contract.SubjectArchiveFailed+testAccount, event.Meta{ID: "ar-q"}, contract.ArchiveFailed{Account: testAccount, ImageID: "g-q",
		Error: `Get "https://img.example.com/x.png?token=SECRET": timeout`, Attempts: 1}, nil)

	page := h.get(c, "/console/archive")
	if page.status != http.StatusOK {
		t.Fatalf("archive: %d", page.status)
	}
	i1, i2 := strings.Index(page.body, "g-bad"), strings.Index(page.body, "g-worse")
	if i1 < 0 || i2 < 0 || i2 > i1 {
		t.Fatalf("failures not newest first:\n%s", page.body)
	}
	for _, want := range []string{"fetch: 404 Not Found", `<td class="num">7</td>`, `<td class="num">3</td>`, "permanent",
		fmt.Sprintf(`action="/console/archive/%d/retry"`, f1)} {
		if !strings.Contains(page.body, want) {
			t.Errorf("archive page lacks %q", want)
		}
	}
	if strings.Contains(page.body, "SECRET") || strings.Contains(page.body, `"ok"`) {
		t.Errorf("archive page shows a secret or a stored image")
	}

	retry := func(seq uint64, csrf string) answer {
		return h.do(c, http.MethodPost, fmt.Sprintf("/console/archive/%d/retry", seq), url.Values{"csrf": {csrf}}, nil)
	}
	// A deployment whose archiver takes no retries has no ARCHIVER_RETRY
	// stream: the operator is told, nothing is lost.
	if err := h.js.DeleteStream(t.Context(), "ARCHIVER_RETRY"); err != nil {
		t.Fatal(err)
	}
	if a := retry(f1, csrf); a.status != http.StatusNotImplemented || !strings.Contains(a.body, "does not accept retries") {
		t.Fatalf("retry without a retry stream: %d\n%s", a.status, a.body)
	}

	// With the stream of streams/archiver-retry.yaml, as the archiver consumes it.
	natstest.ApplyStreams(t, h.js, 1)
	s, err := h.js.Stream(t.Context(), "ARCHIVER_RETRY")
	if err != nil {
		t.Fatal(err)
	}
	a := retry(f1, csrf)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != fmt.Sprintf("/console/archive?retried=%d", f1) {
		t.Fatalf("retry: %d %q %s", a.status, a.header.Get("Location"), a.body)
	}
	if p := h.get(c, a.header.Get("Location")); !strings.Contains(p.body, fmt.Sprintf("Retry of #%d requested", f1)) {
		t.Errorf("no confirmation after a retry")
	}
	a = retry(f1, csrf)
	if a.status != http.StatusSeeOther || !strings.Contains(a.header.Get("Location"), "repeat=1") {
		t.Fatalf("second retry: %d %q", a.status, a.header.Get("Location"))
	}
	if a := retry(f2, "forged"); a.status != http.StatusForbidden {
		t.Fatalf("retry with a bad CSRF token: %d", a.status)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("ARCHIVER_RETRY holds %d requests, want 1", info.State.Msgs)
	}
	m, err := s.GetMsg(t.Context(), info.State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	var req archiveretry.Request
	if err := json.Unmarshal(m.Data, &req); err != nil {
		t.Fatal(err)
	}
	if m.Subject != contract.SubjectArchiverRetry+testAccount || req.ID != fmt.Sprintf("retry-%d", f1) || req.FailedSeq != f1 ||
		req.ImageID != "g-bad" || req.Key != testAccount+"/2026/g-bad.png" || req.FailedID != "ar-g-bad" ||
		m.Header.Get("Nats-Msg-Id") != req.ID || event.Get(m.Header, event.HeaderID) != req.ID ||
		event.Get(m.Header, event.HeaderType) != contract.TypeArchiverRetry || event.Get(m.Header, event.HeaderSource) != contract.SourceConsole {
		t.Fatalf("retry request %s %+v %v", m.Subject, req, m.Header)
	}

	for path, want := range map[string]int{
		"/console/archive/1/retry":   http.StatusNotFound, // a stored event, not a failure
		"/console/archive/999/retry": http.StatusNotFound,
		"/console/archive/x/retry":   http.StatusBadRequest,
	} {
		if a := h.do(c, http.MethodPost, path, url.Values{"csrf": {csrf}}, nil); a.status != want {
			t.Errorf("POST %s: %d, want %d", path, a.status, want)
		}
	}
	if a := h.get(c, "/console/archive?before=zz"); a.status != http.StatusBadRequest {
		t.Errorf("bad before: %d", a.status)
	}
}
