package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/event"
)

const testAccount = "a_abcdefghijklmnopqrstuvwxyz"

func jobRecord(id string, at time.Time, imgs ...contract.JobImage) contract.JobRecord {
	return contract.JobRecord{JobID: id, Account: testAccount, Source: "default", Status: "succeeded", ClosedBy: "job_event",
		Tasks:   []contract.JobTask{{TaskID: "1", InvokeID: "inv-" + id, Success: true, Images: imgs}},
		Images:  imgs,
		Credits: contract.JobCredits{Reserved: 2, Committed: 2}, StartedAt: at.Add(-time.Second), FinishedAt: at}
}

func (h *harness) publishJob(r contract.JobRecord) uint64 {
	h.t.Helper()
	return h.publish(contract.SubjectJobFinished+r.Account, event.Meta{ID: r.JobID, Source: "/test", Type: "sd.job.finished", Time: r.FinishedAt, Subject: r.Account}, r, nil)
}

// TestJobsListDetailAndThumbnails: the list shows the latest jobs newest
// first with thumbnails of their archived images, scaled and with the right
// content type; the detail view shows tasks, credits, every image and the
// INGRESS events of the job with their secrets redacted.
func TestJobsListDetailAndThumbnails(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c, _ := h.login()
	now := time.Now().UTC()

	pngURI := h.archive(testAccount+"/2026/g-1.png", testPNG(t, 1024, 512), "image/png")
	jpgURI := h.archive(testAccount+"/2026/g-2.jpg", testJPEG(t, 300, 600), "image/jpeg")
	txtURI := h.archive(testAccount+"/2026/g-3.img", []byte("not an image"), "application/octet-stream")

	// The INGRESS events of the job, with the secrets the console must hide.
	body := `{"success":true,"data":{"generatedImageId":"g-1","url":"https://img.example.com/g-1.png?Signature=SECRETSIG&Expires=1","type":"png"}}`
	h.publish("sd.callback.default.sdTaskFinished", event.Meta{ID: "in-1", Source: "/cb", Type: "sd.callback.sdTaskFinished", Subject: testAccount},
		[]byte(body), map[string]string{"sd-source": "default", "sd-account": testAccount, "sd-biz-type": "sdTaskFinished",
			"sd-invoke-id": "inv-j2", "sd-api-token": "ENCRYPTED-TOKEN-VALUE", "sd-sign": "SIGNATURE-VALUE", "sd-nonce": "n1"})
	// Another account's event in the same window is not the job's.
	h.publish("sd.callback.default.sdTaskFinished", event.Meta{ID: "in-2", Source: "/cb", Type: "sd.callback.sdTaskFinished"},
		[]byte(`{"success":true}`), map[string]string{"sd-source": "default", "sd-account": "a_other", "sd-biz-type": "sdTaskFinished", "sd-invoke-id": "inv-x"})

	h.publishJob(jobRecord("j1", now.Add(-time.Minute)))
	seq2 := h.publishJob(jobRecord("j2", now,
		contract.JobImage{ImageID: "g-1", URL: "https://img.example.com/g-1.png?Signature=SECRETSIG&Expires=1", Type: "png", URI: pngURI},
		contract.JobImage{ImageID: "g-2", URL: "https://img.example.com/g-2.jpg", Type: "jpg", URI: jpgURI},
		contract.JobImage{ImageID: "g-3", URL: "https://img.example.com/g-3", URI: txtURI},
		contract.JobImage{ImageID: "g-4", URL: "https://img.example.com/g-4.png"}, // not archived
		contract.JobImage{ImageID: "g-5", URL: "https://img.example.com/g-5.png", URI: "s3://elsewhere/x.png"},
	))
	h.publish(contract.SubjectJobFinished+testAccount, event.Meta{ID: "broken"}, []byte(`not json`), nil)

	list := h.get(c, "/console/jobs")
	if list.status != http.StatusOK {
		t.Fatalf("jobs: %d %s", list.status, list.body)
	}
	i1, i2, ib := strings.Index(list.body, `data-job="j1"`), strings.Index(list.body, `data-job="j2"`), strings.Index(list.body, "unreadable record")
	if i1 < 0 || i2 < 0 || ib < 0 || !(ib < i2 && i2 < i1) {
		t.Fatalf("jobs not newest first (broken %d, j2 %d, j1 %d):\n%s", ib, i2, i1, list.body)
	}
	for _, want := range []string{
		`/console/thumb?key=` + strings.ReplaceAll(testAccount+"%2F2026%2Fg-1.png", "/", "%2F") + `&amp;size=s`,
		`title="not archived">g-4<`, "+1", // g-5 is the fifth image
	} {
		if !strings.Contains(list.body, want) {
			t.Errorf("jobs list lacks %q", want)
		}
	}
	if strings.Contains(list.body, "/console/image?") {
		t.Error("the list links full originals")
	}
	if strings.Contains(list.body, "SECRETSIG") {
		t.Error("the list shows an image URL's signature")
	}

	// Thumbnails: scaled, with the content type of their format.
	for _, tc := range []struct {
		key, size, ct string
		maxSide       int
	}{
		{testAccount + "/2026/g-1.png", "s", "image/png", thumbSmall},
		{testAccount + "/2026/g-1.png", "m", "image/png", thumbMedium},
		{testAccount + "/2026/g-2.jpg", "s", "image/jpeg", thumbSmall},
	} {
		for range 2 { // the second comes from the cache
			a := h.get(c, "/console/thumb?key="+tc.key+"&size="+tc.size)
			if a.status != http.StatusOK || a.header.Get("Content-Type") != tc.ct {
				t.Fatalf("thumb %s: %d %s", tc.key, a.status, a.header.Get("Content-Type"))
			}
			img, _, err := image.DecodeConfig(bytes.NewReader([]byte(a.body)))
			if err != nil {
				t.Fatal(err)
			}
			if max(img.Width, img.Height) != tc.maxSide {
				t.Errorf("thumb %s size %s: %dx%d, want longest side %d", tc.key, tc.size, img.Width, img.Height, tc.maxSide)
			}
		}
	}
	if a := h.get(c, "/console/thumb?key="+testAccount+"/2026/g-3.img"); a.status != http.StatusOK || a.header.Get("Content-Type") != "image/svg+xml" {
		t.Errorf("thumb of a non-image: %d %s, want the placeholder", a.status, a.header.Get("Content-Type"))
	}
	if a := h.get(c, "/console/thumb?key="+testAccount+"/missing.png"); a.status != http.StatusNotFound {
		t.Errorf("thumb of a missing key: %d", a.status)
	}
	for _, bad := range []string{"../etc/passwd", "/abs", "a//b", ""} {
		if a := h.get(c, "/console/thumb?key="+bad); a.status != http.StatusBadRequest {
			t.Errorf("thumb key %q: %d, want 400", bad, a.status)
		}
	}
	if a := h.get(c, "/console/image?key="+testAccount+"/2026/g-1.png"); a.status != http.StatusOK || a.header.Get("Content-Type") != "image/png" || len(a.body) < 1000 {
		t.Errorf("original: %d %s %d bytes", a.status, a.header.Get("Content-Type"), len(a.body))
	}
	if a := h.get(c, "/console/image?key="+testAccount+"/2026/g-3.img"); a.header.Get("Content-Type") != "application/octet-stream" || a.header.Get("Content-Disposition") != "attachment" {
		t.Errorf("a non-image original is not a download: %v", a.header)
	}

	// Detail.
	d := h.get(c, fmt.Sprintf("/console/jobs/%d", seq2))
	if d.status != http.StatusOK {
		t.Fatalf("job detail: %d %s", d.status, d.body)
	}
	for _, want := range []string{
		"j2", "inv-j2", "reserved 2 · committed 2 · released 0", "/console/image?key=", "size=m",
		"sd.callback.default.sdTaskFinished", "sd-api-token", "sd-sign", Redacted, "g-1.png?" + Redacted,
	} {
		if !strings.Contains(d.body, want) {
			t.Errorf("job detail lacks %q", want)
		}
	}
	for _, secret := range []string{"ENCRYPTED-TOKEN-VALUE", "SIGNATURE-VALUE", "SECRETSIG", "a_other"} {
		if strings.Contains(d.body, secret) {
			t.Errorf("job detail shows %q", secret)
		}
	}
	for path, want := range map[string]int{
		"/console/jobs/999":      http.StatusNotFound,
		"/console/jobs/x":        http.StatusBadRequest,
		"/console/jobs/0":        http.StatusBadRequest,
		"/console/jobs?before=x": http.StatusBadRequest,
	} {
		if a := h.get(c, path); a.status != want {
			t.Errorf("%s: %d, want %d", path, a.status, want)
		}
	}
}

// TestJobsPageReadsOnlyAPage fills JOBS with 100,000 records and checks
// that a page, the first or one deep inside, costs O(page) reads.
func TestJobsPageReadsOnlyAPage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const total = 100_000
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	at := time.Now().UTC()
	js, err := jetstream.New(h.nc, jetstream.WithPublishAsyncMaxPending(2048))
	if err != nil {
		t.Fatal(err)
	}
	for i := range total {
		r := contract.JobRecord{JobID: fmt.Sprintf("j%06d", i+1), Account: testAccount, Source: "default", Status: "succeeded",
			ClosedBy: "job_event", Tasks: []contract.JobTask{}, Images: []contract.JobImage{}, StartedAt: at, FinishedAt: at}
		raw, _ := json.Marshal(r)
		msg := &nats.Msg{Subject: contract.SubjectJobFinished + testAccount, Data: raw}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishing 100,000 records took too long")
	}
	if _, last, err := h.svc.reader.Bounds(ctx, "JOBS"); err != nil || last != total {
		t.Fatalf("JOBS holds %d (%v)", last, err)
	}

	for _, tc := range []struct {
		path       string
		first, end int // the sequences shown: first (newest) down to end
		next       string
	}{
		{"/console/jobs", total, total - jobsPage + 1, fmt.Sprintf("before=%d", total-jobsPage+1)},
		{"/console/jobs?before=50000", 49999, 49999 - jobsPage + 1, fmt.Sprintf("before=%d", 49999-jobsPage+1)},
		{"/console/jobs?before=10", 9, 1, ""},
	} {
		h.reads.reset()
		a := h.do(h.client(), "GET", tc.path, nil, bearer)
		if a.status != http.StatusOK {
			t.Fatalf("%s: %d", tc.path, a.status)
		}
		shown := strings.Count(a.body, `class="job"`)
		if want := tc.first - tc.end + 1; shown != want {
			t.Errorf("%s shows %d jobs, want %d", tc.path, shown, want)
		}
		for _, seq := range []int{tc.first, tc.end} {
			if !strings.Contains(a.body, fmt.Sprintf(`href="/console/jobs/%d"`, seq)) {
				t.Errorf("%s does not show job #%d", tc.path, seq)
			}
		}
		if tc.next != "" && !strings.Contains(a.body, tc.next) {
			t.Errorf("%s has no link to %s", tc.path, tc.next)
		}
		if tc.next == "" && strings.Contains(a.body, `id="older"`) {
			t.Errorf("%s links an older page past the first record", tc.path)
		}
		// One stream-info request and one batched direct get of one page.
		if msgs, reqs := h.reads.msgs.Load(), h.reads.requests.Load(); msgs > jobsPage || reqs > 3 {
			t.Errorf("%s read %d messages in %d requests; a page is %d", tc.path, msgs, reqs, jobsPage)
		}
	}
}

func TestBackwardOverASparseFilter(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	// 299 stored events with a failure every 50th.
	var failed []uint64
	for i := range 299 {
		subj := contract.SubjectArchiveStored + testAccount
		if i%50 == 49 {
			subj = contract.SubjectArchiveFailed + testAccount
		}
		seq := h.publish(subj, event.Meta{ID: fmt.Sprint("e", i)}, contract.ArchiveStored{Account: testAccount}, nil)
		if i%50 == 49 {
			failed = append(failed, seq)
		}
	}
	msgs, next, err := backward(ctx, h.svc.reader, "ARCHIVE", contract.SubjectArchiveFailed+"*", 0, 4, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 4 || msgs[0].Seq != failed[4] || msgs[3].Seq != failed[1] || next != failed[1] {
		t.Fatalf("first page: %d msgs, next %d; failures at %v", len(msgs), next, failed)
	}
	msgs, next, err = backward(ctx, h.svc.reader, "ARCHIVE", contract.SubjectArchiveFailed+"*", next, 4, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Seq != failed[0] || next != 0 {
		t.Fatalf("second page: %d msgs, next %d", len(msgs), next)
	}
	// A bound on the span searched stops early and says where to go on.
	msgs, next, err = backward(ctx, h.svc.reader, "ARCHIVE", contract.SubjectArchiveFailed+"*", 0, 4, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 0 || next == 0 {
		t.Fatalf("bounded search: %d msgs, next %d", len(msgs), next)
	}
}
