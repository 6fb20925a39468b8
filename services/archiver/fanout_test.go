package archiver_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/deadletter"
	"github.com/sdevents/sdevents/pkg/natstest"
	"github.com/sdevents/sdevents/services/archiver"
)

// TestFanOutLimits: a task result listing more distinct images than
// archive.max_images_per_task gets the first ones archived and one
// sd.archive.dropped event counting the rest, which are never fetched.
// Entries naming an address already listed (another id, another signature)
// are one image: fetched once. A replay of the message changes nothing.
func TestFanOutLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.MaxImagesPerTask = 3
	at := time.Now()
	var urls []string
	bodies := map[int][]byte{}
	for i := range 6 {
		bodies[i] = pngOf(t, uint64(400+i), 20+i, 20)
		urls = append(urls, e.images.serve(fmt.Sprintf("/fan/%d.png", i), bodies[i]))
	}
	entry := func(id, u string) map[string]any {
		return map[string]any{"generatedImageId": id, "url": u, "type": "png"}
	}
	resigned := strings.Replace(urls[1], "c2VjcmV0LXNpZ25hdHVyZQ", "b3RoZXItc2lnbmF0dXJl", 1)
	data := []map[string]any{
		entry("g0", urls[0]), entry("g1", urls[1]), entry("g0-again", urls[0]), entry("g2", urls[2]),
		entry("g3", urls[3]), entry("g1-resigned", resigned), entry("g4", urls[4]), entry("g5", urls[5]),
	}
	msg := e.publishCallback("a_fan", "inv-fan", at, map[string]any{"success": true, "data": data})
	e.start()
	evs := e.waitSettled(4, 30*time.Second)
	var dropped []contract.ArchiveDropped
	stored := map[string]string{}
	for _, ev := range evs {
		switch {
		case ev.stored():
			stored[ev.Stored.ImageID] = ev.Stored.SHA256
		case strings.HasPrefix(ev.Subject, contract.SubjectArchiveDropped):
			var d contract.ArchiveDropped
			raw, err := e.js.Stream(t.Context(), contract.StreamArchive)
			if err != nil {
				t.Fatal(err)
			}
			m, err := raw.GetMsg(t.Context(), ev.Seq)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(m.Data, &d); err != nil {
				t.Fatal(err)
			}
			if ev.Subject != contract.SubjectArchiveDropped+"a_fan" {
				t.Errorf("subject %s", ev.Subject)
			}
			dropped = append(dropped, d)
		default:
			t.Errorf("unexpected %+v", ev)
		}
	}
	want := map[string]string{"g0": sha(bodies[0]), "g1": sha(bodies[1]), "g2": sha(bodies[2])}
	if fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Errorf("stored %v, want %v", stored, want)
	}
	if len(dropped) != 1 || dropped[0].Account != "a_fan" || dropped[0].TaskID != "inv-fan" || dropped[0].Images != 6 ||
		dropped[0].Archived != 3 || dropped[0].Dropped != 3 || dropped[0].Limit != 3 {
		t.Errorf("dropped events %+v", dropped)
	}
	fetches := func() string {
		var n []int
		for i := range 6 {
			n = append(n, e.images.count(fmt.Sprintf("/fan/%d.png", i)))
		}
		return fmt.Sprint(n)
	}
	if got := fetches(); got != "[1 1 1 0 0 0]" {
		t.Errorf("fetches per image %s, want [1 1 1 0 0 0]", got)
	}
	e.republish(msg)
	e.waitSettled(4, 30*time.Second)
	if got := fetches(); got != "[1 1 1 0 0 0]" {
		t.Errorf("after a replay, fetches per image %s", got)
	}
}

// TestAccountsTakeTurns: an account with a backlog of images queued and
// another account's single image: the single image is archived while the
// backlog is still in progress, not after it.
func TestAccountsTakeTurns(t *testing.T) {
	t.Parallel()
	const tasks, perTask = 4, 20
	e := newEnv(t)
	e.cfg.Workers = 2 // one fetch at a time from the image server
	at := time.Now()
	slow := func(b []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(20 * time.Millisecond)
			w.Write(b)
		}
	}
	for task := range tasks {
		var data []map[string]any
		for i := range perTask {
			u := e.images.handle(fmt.Sprintf("/big/%d/%d.png", task, i), slow(pngOf(t, uint64(task*100+i), 8, 8)))
			data = append(data, map[string]any{"generatedImageId": fmt.Sprintf("g%d", i), "url": u, "type": "png"})
		}
		e.publishCallback("a_big", fmt.Sprintf("big-%d", task), at, map[string]any{"success": true, "data": data})
	}
	e.publishCallback("a_small", "small", at, map[string]any{"success": true, "data": map[string]any{
		"generatedImageId": "g", "url": e.images.handle("/small.png", slow(pngOf(t, 9, 8, 8))), "type": "png",
	}})
	e.start()
	evs := e.waitSettled(tasks*perTask+1, 60*time.Second)
	var small uint64
	for _, ev := range evs {
		if ev.Stored.Account == "a_small" {
			small = ev.Seq
		}
	}
	after := 0
	for _, ev := range evs {
		if ev.Stored.Account == "a_big" && ev.Seq > small {
			after++
		}
	}
	if small == 0 || after < tasks*perTask/2 {
		t.Fatalf("the single image was archived with %d of the other account's %d images after it, want at least half", after, tasks*perTask)
	}
}

// TestPoisonMessageIsRecorded: a message that exhausts its consumer's
// max_deliver (here: its retry cannot be scheduled) is buried on its last
// delivery — one record on sd.dead.archiver with the reason, counted — not
// redelivered forever nor dropped silently; the consumer moves on to the
// next task result.
func TestPoisonMessageIsRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, err := e.js.Consumer(t.Context(), contract.StreamIngress, archiver.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	cfg.MaxDeliver = 2
	if _, err := e.js.UpdateConsumer(t.Context(), contract.StreamIngress, cfg); err != nil {
		t.Fatal(err)
	}
	reg := newRegistry()
	e.startWith(reg)
	if err := e.js.DeleteStream(t.Context(), contract.StreamArchiverTimers); err != nil {
		t.Fatal(err)
	}
	e.publishCallback("a_poison", "inv", time.Now(), map[string]any{"success": true, "data": map[string]any{
		"generatedImageId": "g", "url": e.images.handle("/down.png", unavailable), "type": "png",
	}})
	natstest.Eventually(t, 30*time.Second, "the message recorded as a dead letter", func() bool {
		return e.consumerIdle(contract.StreamIngress, archiver.ConsumerName) &&
			metricValue(t, reg, deadletter.MetricName, "consumer", archiver.ConsumerName) == 1
	})
	if n := e.images.count("/down.png"); n != 2 {
		t.Errorf("%d fetches, want one per delivery (2)", n)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("events %+v", evs)
	}
	recs := e.deadRecords()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	if r := recs[0]; r.On != "sd.dead.archiver" || r.Stream != contract.StreamIngress || r.Sequence != 1 ||
		r.Subject != "sd.callback.default.sdTaskFinished" || r.Deliveries != 2 ||
		!strings.HasPrefix(r.Reason, "failed 2 times: ") || !strings.Contains(r.Reason, "schedule retry") {
		t.Fatalf("record %+v", r)
	}
	e.publishCallback("a_poison", "inv-2", time.Now(), map[string]any{"success": true, "data": map[string]any{
		"generatedImageId": "g", "url": e.images.serve("/fine.png", pngOf(t, 9, 8, 8)), "type": "png",
	}})
	if evs := e.waitSettled(1, 30*time.Second); !evs[0].stored() {
		t.Fatalf("events %+v", evs)
	}
	if len(e.deadRecords()) != 1 || metricValue(t, reg, deadletter.MetricName, "consumer", archiver.ConsumerName) != 1 {
		t.Fatal("the next message was recorded too")
	}
}

// TestDeadLetterWhenReplicaDiesOnLastDelivery: a replica that dies holding
// a message's last allowed delivery leaves it to JetStream, whose
// max-deliveries advisory makes another replica record it on
// sd.dead.archiver, once.
func TestDeadLetterWhenReplicaDiesOnLastDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, err := e.js.Consumer(t.Context(), contract.StreamIngress, archiver.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	cfg.MaxDeliver, cfg.AckWait = 1, time.Second
	if _, err := e.js.UpdateConsumer(t.Context(), contract.StreamIngress, cfg); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	u := e.images.handle("/held.png", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	})
	e.publishCallback("a_dead", "inv", time.Now(), map[string]any{"success": true, "data": map[string]any{"generatedImageId": "g", "url": u, "type": "png"}})
	a := e.startDraining(time.Nanosecond)
	natstest.Eventually(t, 10*time.Second, "the image being fetched", func() bool { return e.images.count("/held.png") == 1 })
	reg := newRegistry()
	e.startWith(reg)
	e.start()
	a.kill()
	natstest.Eventually(t, 30*time.Second, "the dead letter recorded by another replica", func() bool {
		return len(e.deadRecords()) == 1
	})
	if n := e.images.count("/held.png"); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	r := e.deadRecords()[0]
	if r.On != "sd.dead.archiver" || r.Stream != contract.StreamIngress || r.Sequence != 1 || r.Subject != "sd.callback.default.sdTaskFinished" ||
		r.Deliveries != 1 || r.Reason != deadletter.ReasonUnanswered || r.StoredAt.IsZero() {
		t.Fatalf("record %+v", r)
	}
	if n := metricValue(t, reg, deadletter.MetricName, "consumer", archiver.ConsumerName); n > 1 {
		t.Fatalf("counted %v times by one replica", n)
	}
}
