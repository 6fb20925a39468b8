package archiver_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"

	"github.com/sdevents/sdevents/pkg/contract"
	"github.com/sdevents/sdevents/pkg/fetch"
	"github.com/sdevents/sdevents/pkg/miniotest"
	"github.com/sdevents/sdevents/services/archiver"
)

// want is an image a test expects in the archive.
type want struct {
	sha           string
	width, height int
	source        string // source_url expected in the event
}

// TestEndToEndMinIO archives callback images (object and list data, served
// over HTTP with signed URLs) and SNS s3:// images (from a MinIO source
// bucket) into a MinIO sink; each arrives once with its SHA-256. Publishing
// every INGRESS message again changes nothing and fetches nothing.
func TestEndToEndMinIO(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := miniotest.Start(t)
	sink := e.useMinIO(m)
	src := m.MakeBucket(t, "sd-results")
	e.cfg.SourceS3 = fetch.S3Config{Endpoint: e.sink.S3.Endpoint, AccessKey: e.sink.S3.AccessKey, SecretKey: e.sink.S3.SecretKey}
	ctx := t.Context()

	at := time.Now().UTC()
	wants := map[string]want{} // by object key
	var published []*nats.Msg
	seed := uint64(1)
	next := func() (int, int, []byte) {
		w, h := 48+int(seed*37%300), 32+int(seed*53%200)
		seed++
		return w, h, pngOf(t, seed, w, h)
	}
	// Callbacks: one image as an object, then lists of three.
	for task := range 4 {
		n := 1
		if task > 0 {
			n = 3
		}
		var data []map[string]any
		for i := range n {
			w, h, b := next()
			id := fmt.Sprintf("g-%d-%d", task, i)
			u := e.images.serve(fmt.Sprintf("/out/%d/%d.png", task, i), b)
			data = append(data, map[string]any{"generatedImageId": id, "url": u, "type": "png", "sdCheckpointName": "sd_xl_base_1.0"})
			key := archiver.ObjectKey("a_test", at, fmt.Sprintf("inv-%d", task), id, "png")
			wants[key] = want{sha: sha(b), width: w, height: h, source: u[:strings.IndexByte(u, '?')]}
		}
		var body any = map[string]any{"success": true, "data": data}
		if n == 1 {
			body = map[string]any{"success": true, "data": data[0]}
		}
		published = append(published, e.publishCallback("a_test", fmt.Sprintf("inv-%d", task), at, body))
	}
	// SNS: two tasks of two s3:// images each.
	for task := range 2 {
		var urls []string
		for i := range 2 {
			w, h, b := next()
			k := fmt.Sprintf("output/task-%d/image_%d.png", task, i)
			if _, err := m.Client.PutObject(ctx, src, k, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{ContentType: "image/png"}); err != nil {
				t.Fatal(err)
			}
			uri := "s3://" + src + "/" + k
			urls = append(urls, uri)
			key := archiver.ObjectKey("_", at, fmt.Sprintf("task-%d", task), fmt.Sprintf("image_%d", i), "png")
			wants[key] = want{sha: sha(b), width: w, height: h, source: uri}
		}
		published = append(published, e.publishSNS("_", fmt.Sprintf("task-%d", task), at, map[string]any{
			"id": fmt.Sprintf("task-%d", task), "status": "completed", "result": true, "image_url": urls, "output_url": "",
		}))
	}

	e.start()
	evs := e.waitSettled(len(wants), 60*time.Second)
	checkStored(t, evs, wants, "s3://"+sink+"/")
	for key, w := range wants {
		o, err := m.Client.GetObject(ctx, sink, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(o)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		info, _ := o.Stat()
		if sha(b) != w.sha {
			t.Errorf("%s: stored bytes differ", key)
		}
		if got := info.UserMetadata["Source-Url"]; got != w.source {
			t.Errorf("%s: Source-Url metadata %q, want %q", key, got, w.source)
		}
		if info.UserMetadata["Sha256"] != w.sha || info.UserMetadata["Width"] != fmt.Sprint(w.width) {
			t.Errorf("%s: metadata %v", key, info.UserMetadata)
		}
		if strings.HasPrefix(key, "a_test/") && info.UserMetadata["Model"] != "sd_xl_base_1.0" {
			t.Errorf("%s: model metadata %v", key, info.UserMetadata)
		}
	}

	// Redeliver everything: new INGRESS messages with new ids.
	fetched := e.images.count("/out/1/1.png")
	for _, p := range published {
		e.republish(p)
	}
	again := e.waitSettled(len(wants), 60*time.Second)
	if got := e.images.count("/out/1/1.png"); got != fetched {
		t.Errorf("redelivery fetched an archived image again: %d requests, was %d", got, fetched)
	}
	for i := range evs {
		if again[i] != evs[i] {
			t.Errorf("event %d changed after redelivery", i)
		}
	}
}

// checkStored asserts that evs are exactly one stored event per wanted key.
func checkStored(t *testing.T, evs []archiveEvent, wants map[string]want, uriPrefix string) {
	t.Helper()
	seen := map[string]bool{}
	for _, ev := range evs {
		if !ev.stored() {
			t.Errorf("unexpected failure: %+v", ev.Failed)
			continue
		}
		s := ev.Stored
		w, ok := wants[s.Key]
		switch {
		case !ok:
			t.Errorf("unexpected key %s", s.Key)
			continue
		case seen[s.Key]:
			t.Errorf("two stored events for %s", s.Key)
		}
		seen[s.Key] = true
		if s.SHA256 != w.sha || s.Width != w.width || s.Height != w.height || s.ContentType != "image/png" {
			t.Errorf("%s: event %+v, want %+v", s.Key, s, w)
		}
		if s.SourceURL != w.source || strings.Contains(s.SourceURL, "Signature") {
			t.Errorf("%s: source_url %q, want %q", s.Key, s.SourceURL, w.source)
		}
		if s.URI != uriPrefix+s.Key || !strings.HasPrefix(s.Key, s.Account+"/") || s.Size <= 0 {
			t.Errorf("%s: uri %q key %q size %d", s.Key, s.URI, s.Key, s.Size)
		}
		if ev.ID != archiver.EventID(s.Key) || ev.Subject != contract.SubjectArchiveStored+s.Account {
			t.Errorf("%s: id %s subject %s", s.Key, ev.ID, ev.Subject)
		}
		if s.ArchivedAt.IsZero() {
			t.Errorf("%s: no archived_at", s.Key)
		}
	}
	if len(seen) != len(wants) {
		t.Errorf("%d images stored, want %d", len(seen), len(wants))
	}
}
