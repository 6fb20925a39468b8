package archiver_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/archiveretry"
	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/archiver"
)

// TestRetryRequests: a failed image (the source answered 403) is archived
// again on a retry request; while the source is still broken the retry
// produces one new failed event, once it is fixed a retry of that failure
// produces one stored event. The same request delivered several times, to
// two replicas at once and again later, and requests for an image that is
// not (or no longer) that failure, change nothing.
func TestRetryRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const acct = "a_retry"
	good := pngOf(t, 11, 48, 48)
	var fixed atomic.Bool
	url := e.images.handle("/later.png", func(w http.ResponseWriter, r *http.Request) {
		if !fixed.Load() {
			http.Error(w, "Forbidden", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Write(good)
	}) + "?Expires=1700000000&Signature=c2lnbmVk"
	okURL := e.images.serve("/fine.png", good)
	at := time.Now()
	later := e.publishCallback(acct, "inv-later", at, map[string]any{"success": true, "data": map[string]any{
		"generatedImageId": "g", "url": url, "type": "png"}})
	e.publishCallback(acct, "inv-fine", at, map[string]any{"success": true, "data": map[string]any{
		"generatedImageId": "g", "url": okURL, "type": "png"}})
	e.start()
	e.start()
	evs := e.waitSettled(2, 30*time.Second)
	var failed, stored archiveEvent
	for _, ev := range evs {
		if ev.stored() {
			stored = ev
		} else {
			failed = ev
		}
	}
	if failed.Failed.TaskID != "inv-later" || stored.Stored.TaskID != "inv-fine" {
		t.Fatalf("events %+v", evs)
	}
	key := archiverKey(acct, at, "inv-later")
	if failed.Failed.Key != key || failed.ID != archiver.EventID(key) {
		t.Fatalf("failed event %+v", failed)
	}

	n := 0
	request := func(ev archiveEvent, seq uint64) {
		t.Helper()
		n++
		data := ev.Failed
		if ev.stored() {
			s := ev.Stored
			data = contract.ArchiveFailed{Account: s.Account, TaskID: s.TaskID, ImageID: s.ImageID, SourceURL: s.SourceURL, Key: s.Key}
		}
		req := archiveretry.Request{ID: archiveretry.ID(seq), FailedSeq: seq, FailedID: ev.ID,
			Account: data.Account, TaskID: data.TaskID, ImageID: data.ImageID, Key: data.Key, SourceURL: data.SourceURL,
			RequestedAt: time.Now().UTC()}
		// The archiver reads the request's data alone (the console adds
		// CloudEvents headers). A fresh Nats-Msg-Id each time: the same
		// request as it would come again after the stream's duplicate window.
		msg := nats.NewMsg(archiveretry.Subject(req.Account))
		var err error
		if msg.Data, err = json.Marshal(req); err != nil {
			t.Fatal(err)
		}
		msg.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%s-%d", req.ID, n))
		e.publish(msg)
	}
	// idle waits until every retry request is acknowledged and ARCHIVE
	// holds want events.
	idle := func(want int) []archiveEvent {
		t.Helper()
		var evs []archiveEvent
		natstest.Eventually(t, 30*time.Second, "retry requests handled", func() bool {
			s, err := e.js.Stream(t.Context(), contract.StreamArchiverRetry)
			if err != nil || s.CachedInfo().State.Msgs != 0 {
				return false
			}
			evs = e.events()
			return len(evs) >= want
		})
		// A request leaves the work queue when it is acknowledged, after its
		// outcome was published: nothing more can come from these.
		if evs = e.events(); len(evs) != want {
			t.Fatalf("ARCHIVE holds %d events, want %d: %+v", len(evs), want, evs)
		}
		return evs
	}

	// Not a failure, a wrong sequence: no effect.
	request(stored, stored.Seq)
	request(failed, failed.Seq+100)
	idle(2)

	// Still broken: one new failed event, with its own id; the request
	// three times (two replicas) still gives one.
	for range 3 {
		request(failed, failed.Seq)
	}
	evs = idle(3)
	again := evs[2]
	if again.stored() || again.ID != archiver.RetryEventID(key, failed.Seq) || again.Failed.Key != key ||
		again.Failed.TaskID != "inv-later" || !again.Failed.Permanent {
		t.Fatalf("retry of a still broken source: %+v", again)
	}
	// The first failure is no longer the image's outcome.
	request(failed, failed.Seq)
	idle(3)

	// Fixed: a retry of the latest failure stores the image, once.
	fixed.Store(true)
	for range 3 {
		request(again, again.Seq)
	}
	evs = idle(4)
	ok := evs[3]
	if !ok.stored() || ok.ID != archiver.RetryEventID(key, again.Seq) || ok.Stored.Key != key ||
		ok.Stored.SHA256 != sha(good) || ok.Stored.TaskID != "inv-later" {
		t.Fatalf("retry of a fixed source: %+v", ok)
	}
	// Later repeats of either request, and the INGRESS message again,
	// change nothing and fetch nothing. (Copies of one request handled at
	// the same moment may each fetch; only one outcome is recorded.)
	fetched := e.images.count("/later.png")
	request(again, again.Seq)
	request(failed, failed.Seq)
	idle(4)
	e.republish(later)
	e.waitSettled(4, 30*time.Second)
	if got := e.images.count("/later.png"); got != fetched {
		t.Errorf("source fetched %d more times after the image was stored", got-fetched)
	}
}
