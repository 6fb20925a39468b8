package archiver_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/fetch"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/archiver"
)

// unavailable answers 503 to every request.
func unavailable(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "busy", http.StatusServiceUnavailable)
}

// TestFailingSourcesDoNotBlockOthers: 400 task results whose images answer
// 503 are tried, handed to the retry schedule and acknowledged, so an image
// sent afterwards from a working URL is archived while they still wait
// (within 30 s, the requirement; long before their lifetime ends). Each of
// the 400 ends in exactly one failed event once its lifetime is over.
func TestFailingSourcesDoNotBlockOthers(t *testing.T) {
	t.Parallel()
	const failing = 400
	e := newEnv(t)
	e.cfg.URLLifetime = 45 * time.Second
	at := time.Now()
	for i := range failing {
		u := e.images.handle(fmt.Sprintf("/down/%d.png", i), unavailable)
		e.publishCallback("a_mixed", fmt.Sprintf("down-%d", i), at, map[string]any{"success": true, "data": map[string]any{
			"generatedImageId": "g", "url": u + "?Signature=s", "type": "png",
		}})
	}
	e.start(archiver.WithBackoff(5*time.Second, 10*time.Second))
	natstest.Eventually(t, 30*time.Second, "the failing sources being tried", func() bool {
		return e.images.count(fmt.Sprintf("/down/%d.png", failing/2)) > 0
	})
	good := pngOf(t, 1, 32, 32)
	e.publishCallback("a_mixed", "good", time.Now(), map[string]any{"success": true, "data": map[string]any{
		"generatedImageId": "g", "url": e.images.serve("/good.png", good), "type": "png",
	}})
	var stored *archiveEvent
	natstest.Eventually(t, 30*time.Second, "the good image archived", func() bool {
		for _, ev := range e.events() {
			if ev.stored() {
				stored = &ev
				return true
			}
		}
		return false
	})
	if stored.Stored.TaskID != "good" || stored.Stored.SHA256 != sha(good) {
		t.Fatalf("stored %+v", stored.Stored)
	}
	// Ordering, not time: the good image was archived before any of the
	// failing ones was given up on.
	for _, ev := range e.events() {
		if !ev.stored() && ev.Seq < stored.Seq {
			t.Fatalf("failure %+v recorded before the good image", ev.Failed)
		}
	}

	evs := e.waitSettled(failing+1, 3*time.Minute)
	failed := map[string]int{}
	for _, ev := range evs {
		if ev.stored() {
			continue
		}
		failed[ev.Failed.TaskID]++
		f := ev.Failed
		// The last attempt's reason is usually the 503; on a loaded machine it
		// may be a timeout instead.
		if f.Permanent || !strings.HasPrefix(f.Error, "gave up when the source expired: source ") || f.Attempts < 2 {
			t.Errorf("failure %+v", f)
		}
	}
	for i := range failing {
		if n := failed[fmt.Sprintf("down-%d", i)]; n != 1 {
			t.Errorf("down-%d: %d failed events, want 1", i, n)
		}
	}
	natstest.Eventually(t, 30*time.Second, "no retry left", func() bool {
		return e.consumerIdle(contract.StreamArchiverTimers, archiver.DueConsumerName) && e.streamMsgs(contract.StreamArchiverTimers) == 0
	})
}

// trickle answers 200 and then sends body one byte every interval until
// the client goes away: never quiet long enough for an idle timeout.
func trickle(body []byte, interval time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for _, c := range body {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				if _, err := w.Write([]byte{c}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	}
}

// TestTricklingSourcesDoNotStall: twelve sources on one host that send a
// byte every 2 s hold at most half of the workers, each only until the
// fetch deadline; an image from another host is archived meanwhile, and
// the trickling ones are tried again later.
func TestTricklingSourcesDoNotStall(t *testing.T) {
	t.Parallel()
	const slow = 12
	e := newEnv(t)
	e.cfg.Limits.Timeout = 3 * time.Second
	other := newImageServer(t)
	e.cfg.AllowHosts = append(e.cfg.AllowHosts, other.host)
	at := time.Now()
	for i := range slow {
		// A real PNG, so that its first bytes pass as an image.
		u := e.images.handle(fmt.Sprintf("/trickle/%d.png", i), trickle(pngOf(t, uint64(500+i), 16, 16), 2*time.Second))
		e.publishCallback("a_slow", fmt.Sprintf("slow-%d", i), at, map[string]any{"success": true, "data": map[string]any{
			"generatedImageId": "g", "url": u, "type": "png",
		}})
	}
	e.start(archiver.WithHTTPConfig(func(c *fetch.HTTPConfig) {
		c.Resolver = loopbackResolver{}
		c.ReadTimeout = 30 * time.Second // longer than the trickle's pauses
	}))
	natstest.Eventually(t, 30*time.Second, "workers held by trickling sources", func() bool {
		n := 0
		for i := range slow {
			n += e.images.count(fmt.Sprintf("/trickle/%d.png", i))
		}
		return n >= e.cfg.Workers/2
	})
	good := pngOf(t, 2, 24, 24)
	e.publishCallback("a_slow", "good", time.Now(), map[string]any{"success": true, "data": map[string]any{
		"generatedImageId": "g", "url": other.serve("/good.png", good), "type": "png",
	}})
	natstest.Eventually(t, 30*time.Second, "the image from another host archived", func() bool {
		for _, ev := range e.events() {
			if ev.stored() && ev.Stored.TaskID == "good" && ev.Stored.SHA256 == sha(good) {
				return true
			}
		}
		return false
	})
	natstest.Eventually(t, 90*time.Second, "every trickling source cut off at the deadline and tried again", func() bool {
		for i := range slow {
			if e.images.count(fmt.Sprintf("/trickle/%d.png", i)) < 2 {
				return false
			}
		}
		return true
	})
	for _, ev := range e.events() {
		if ev.Stored.TaskID != "good" {
			t.Errorf("unexpected event %+v", ev)
		}
	}
}

// TestFailuresLogOnce: a transient failure is logged at debug level each
// time it is retried; an image that fails for good is one warning (with
// the details the event leaves out), whatever the number of attempts.
func TestFailuresLogOnce(t *testing.T) {
	t.Parallel()
	const n = 5
	e := newEnv(t)
	e.cfg.URLLifetime = 5 * time.Second
	at := time.Now()
	for i := range n {
		u := e.images.handle(fmt.Sprintf("/down/%d.png", i), unavailable)
		e.publishCallback("a_logs", fmt.Sprintf("down-%d", i), at, map[string]any{"success": true, "data": map[string]any{
			"generatedImageId": "g", "url": u, "type": "png",
		}})
	}
	var logs syncBuffer
	e.start(archiver.WithBackoff(time.Second, time.Second), archiver.WithLogger(zerolog.New(&logs).Level(zerolog.DebugLevel)))
	e.waitSettled(n, 90*time.Second)
	warns, retries := 0, 0
	for _, l := range logs.lines(t) {
		switch {
		case l["level"] == "warn" && l["message"] == "archive failed":
			warns++
			if !strings.Contains(fmt.Sprint(l["cause"]), "/down/") {
				t.Errorf("warning without the details: %v", l)
			}
		case l["level"] == "warn" || l["level"] == "error":
			t.Errorf("unexpected %v", l)
		case l["message"] == "archive retry scheduled":
			retries++
		}
	}
	if warns != n || retries < n {
		t.Errorf("%d warnings and %d retry lines for %d images that failed for good: want %d and at least %d", warns, retries, n, n, n)
	}
}

// TestShutdownHandsQueuedWorkBack: a replica stopped with images queued
// behind a busy worker hands their messages back at once: another replica
// archives them while the stopping one still finishes its fetch in flight
// (nothing waits for an ack timeout).
func TestShutdownHandsQueuedWorkBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Workers = 2         // one fetch at a time from the image server
	e.cfg.Limits.MinRate = -1 // no minimum: the held fetch below may wait long on a loaded machine
	at := time.Now()
	release := make(chan struct{})
	var releaseOnce sync.Once
	unhold := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unhold) // a failed assertion does not leave the fetch held until its read timeout
	wants := map[string]want{}
	for i := range 6 {
		b := pngOf(t, uint64(300+i), 16, 16)
		u := e.images.handle(fmt.Sprintf("/queued/%d.png", i), func(w http.ResponseWriter, r *http.Request) {
			if i == 0 { // the first image holds the stopping replica's worker mid-body
				w.Header().Set("Content-Length", fmt.Sprint(len(b)))
				w.Write(b[:len(b)/2])
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				w.Write(b[len(b)/2:])
				return
			}
			w.Write(b)
		})
		task := fmt.Sprintf("inv-%d", i)
		e.publishCallback("a_queued", task, at, map[string]any{"success": true, "data": map[string]any{"generatedImageId": "g", "url": u, "type": "png"}})
		wants[archiverKey("a_queued", at, task)] = want{sha: sha(b), width: 16, height: 16, source: u}
	}
	patient := archiver.WithHTTPConfig(func(c *fetch.HTTPConfig) {
		c.Resolver = loopbackResolver{}
		c.ReadTimeout = time.Minute
	})
	a := e.startDraining(time.Minute, patient)
	natstest.Eventually(t, 30*time.Second, "one fetch in flight and the rest held", func() bool {
		c, err := e.js.Consumer(context.Background(), contract.StreamIngress, archiver.ConsumerName)
		return err == nil && c.CachedInfo().NumAckPending == 6 && e.images.count("/queued/0.png") == 1
	})
	e.start()
	stopped := make(chan struct{})
	go func() {
		a.stop()
		close(stopped)
	}()
	natstest.Eventually(t, time.Minute, "the queued images archived by the other replica", func() bool {
		return len(e.events()) == 5
	})
	select {
	case <-stopped:
		t.Fatal("the stopping replica did not wait for its fetch in flight")
	default:
	}
	unhold()
	<-stopped
	evs := e.waitSettled(len(wants), 20*time.Second)
	checkStored(t, evs, wants, "file://"+e.sink.Dir+"/")
}
