package archiver_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sdevents/sdevents/pkg/miniotest"
	"github.com/sdevents/sdevents/pkg/natstest"
)

// slowImages serves n distinct PNGs, each after delay, and returns what
// the archive should hold for a callback per image published at at.
func slowImages(e *env, n int, delay time.Duration, account string, at time.Time) map[string]want {
	e.t.Helper()
	return slowImagesCounted(e, n, delay, account, at, new(atomic.Int64))
}

// slowImagesCounted is slowImages, keeping in busy how many requests are
// being answered.
func slowImagesCounted(e *env, n int, delay time.Duration, account string, at time.Time, busy *atomic.Int64) map[string]want {
	e.t.Helper()
	wants := map[string]want{}
	for i := range n {
		b := pngOf(e.t, uint64(100+i), 40+i, 30)
		path := fmt.Sprintf("/slow/%d.png", i)
		u := e.images.handle(path, func(w http.ResponseWriter, r *http.Request) {
			busy.Add(1)
			defer busy.Add(-1)
			time.Sleep(delay)
			w.Write(b)
		})
		task := fmt.Sprintf("inv-%d", i)
		e.publishCallback(account, task, at, map[string]any{"success": true, "data": map[string]any{
			"generatedImageId": "g", "url": u, "type": "png", "width": 40 + i, "height": 30,
		}})
		wants[archiverKey(account, at, task)] = want{sha: sha(b), width: 40 + i, height: 30, source: u}
	}
	return wants
}

// TestMinIORestartLosesNothing stops the MinIO sink while images are being
// archived and starts it again: every image ends up stored once.
func TestMinIORestartLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := miniotest.Start(t)
	bucket := e.useMinIO(m)
	e.cfg.Workers = 4
	at := time.Now()
	wants := slowImages(e, 30, 40*time.Millisecond, "a_restart", at)
	e.start()
	natstest.Eventually(t, 30*time.Second, "the first stored events", func() bool { return len(e.events()) >= 5 })
	m.Stop()
	time.Sleep(time.Second) // archiving fails meanwhile and is retried
	if n := len(e.events()); n >= len(wants) {
		t.Fatalf("everything was archived before MinIO stopped (%d events): the test proves nothing", n)
	}
	m.Restart()
	evs := e.waitSettled(len(wants), 90*time.Second)
	checkStored(t, evs, wants, "s3://"+bucket+"/")
	for key, w := range wants {
		o, err := m.Client.GetObject(t.Context(), bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(o)
		if err != nil || sha(b) != w.sha {
			t.Errorf("%s: stored bytes differ (%v)", key, err)
		}
	}
}

// TestTwoReplicasOneKilled shares the work between two replicas and kills
// one mid-run: its unacknowledged messages go to the other after the ack
// wait, and every image is archived exactly once.
func TestTwoReplicasOneKilled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setAckWait(2 * time.Second)
	e.cfg.Workers = 6 // at most 3 fetch from the one image server
	at := time.Now()
	var busy atomic.Int64
	wants := slowImagesCounted(e, 30, 200*time.Millisecond, "a_replicas", at, &busy)
	a := e.startDraining(time.Nanosecond)
	e.start()
	// More fetches in flight than one replica may run on one host: the
	// killed one is in the middle of at least one.
	natstest.Eventually(t, 30*time.Second, "stored events and both replicas fetching", func() bool {
		return busy.Load() > int64(e.cfg.Workers/2) && len(e.events()) >= 4
	})
	a.kill()
	evs := e.waitSettled(len(wants), 60*time.Second)
	checkStored(t, evs, wants, "file://"+e.sink.Dir+"/")
	fetches := 0
	for i := range len(wants) {
		fetches += e.images.count(fmt.Sprintf("/slow/%d.png", i))
	}
	if fetches <= len(wants) {
		t.Errorf("%d fetches for %d images: the killed replica had nothing in flight, the test proves nothing", fetches, len(wants))
	}
}

// TestShutdownDrainsInFlight stops a replica while it is fetching: the
// images in flight are finished and acknowledged before Run returns.
func TestShutdownDrainsInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Workers = 8 // four at a time from the one image server
	var started atomic.Int64
	at := time.Now()
	wants := map[string]want{}
	for i := range 4 {
		b := pngOf(t, uint64(200+i), 20, 20)
		u := e.images.handle(fmt.Sprintf("/drain/%d.png", i), func(w http.ResponseWriter, r *http.Request) {
			started.Add(1)
			time.Sleep(300 * time.Millisecond)
			io.Copy(w, bytes.NewReader(b))
		})
		task := fmt.Sprintf("inv-%d", i)
		e.publishCallback("a_drain", task, at, map[string]any{"success": true, "data": map[string]any{"generatedImageId": "g", "url": u, "type": "png"}})
		wants[archiverKey("a_drain", at, task)] = want{sha: sha(b), width: 20, height: 20, source: u}
	}
	r := e.start()
	natstest.Eventually(t, 10*time.Second, "four fetches in flight", func() bool { return started.Load() == 4 })
	r.stop()
	evs := e.waitSettled(len(wants), time.Second) // already settled: no replica runs now
	checkStored(t, evs, wants, "file://"+e.sink.Dir+"/")
}
