package aggregator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/sdevents/sdevents/pkg/event"
)

// TestCreditsAndArchiveURIs: a closing job carries the credits of its
// invokeIds from QUOTA and the archive URIs of its images from ARCHIVE, as
// they are when it closes.
func TestCreditsAndArchiveURIs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const acct = "a_credits"
	put := func(subject string, v map[string]any) {
		data, _ := json.Marshal(v)
		msg := event.Message(subject, event.Meta{ID: subject + time.Now().String(), Source: "/test", Type: "t", Time: time.Now(), Subject: acct}, data)
		if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	quota := func(typ, inv string, credits int) {
		put("sd.quota."+acct, map[string]any{"type": typ, "account": acct, "invoke_id": inv, "credits": credits})
	}
	quota("granted", "", 100)
	for range 600 { // more than one direct-get batch
		quota("reserved", "inv-other", 1)
	}
	quota("reserved", "inv-1", 2)
	quota("committed", "inv-1", 2)
	quota("reserved", "inv-2", 1)
	quota("released", "inv-2", 1)
	quota("reserved", "inv-other", 7)
	quota("committed", "inv-1", 1) // after hundreds of others
	put("sd.quota.a_someone_else", map[string]any{"type": "reserved", "invoke_id": "inv-1", "credits": 50})
	put("sd.archive.stored."+acct, map[string]any{"account": acct, "source_url": "https://img.example/img-1.png", "uri": "file:///archive/img-1.png", "key": acct + "/img-1.png"})

	e.start()
	e.callback("default", "sdPreInvoke", acct, "inv-1", nil)
	e.callback("default", "sdTaskFinished", acct, "inv-1", taskBody(true, "img-1"))
	e.callback("default", "sdTaskFinished", acct, "inv-2", taskBody(true, "img-2"))
	e.callback("default", "sdJobFinished", acct, "inv-1", taskBody(true, "img-1"))
	e.waitJobs(10*time.Second, 1)
	got := e.jobsStored()
	if len(got) != 1 {
		t.Fatalf("%d jobs", len(got))
	}
	j := got[0]
	if c := j.Credits; c.Reserved != 3 || c.Committed != 3 || c.Released != 1 {
		t.Errorf("credits %+v, want reserved 3, committed 3, released 1", c)
	}
	if u := j.Tasks[0].Images[0].URI; u != "file:///archive/img-1.png" {
		t.Errorf("task image uri %q", u)
	}
	if u := j.Images[0].URI; u != "file:///archive/img-1.png" {
		t.Errorf("job image uri %q", u)
	}
	if u := j.Tasks[1].Images[0].URI; u != "" {
		t.Errorf("unarchived image has uri %q", u)
	}
}

// TestArchiveURIsOfS3Images: an SNS job's images are s3:// URIs whose keys
// may hold characters a URL would escape or cut ('?', '#', spaces); the
// archiver records them as they are, and the job record finds their URIs.
func TestArchiveURIsOfS3Images(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const acct = "a_s3keys"
	keys := []string{"s3://out/t1/a b.png", "s3://out/t1/c#1.png", "s3://out/t1/d?x=1.png", "s3://out/t1/100%.png"}
	for i, k := range keys {
		data, _ := json.Marshal(map[string]any{"account": acct, "source_url": k, "uri": fmt.Sprintf("s3://archive/%d.png", i)})
		msg := event.Message("sd.archive.stored."+acct, event.Meta{ID: fmt.Sprintf("ar-s3-%d", i), Source: "/test", Type: "t", Time: time.Now(), Subject: acct}, data)
		if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	e.start()
	e.sns("eks", acct, map[string]any{"id": "t1", "status": "completed", "result": true, "image_url": keys})
	e.waitJobs(10*time.Second, 1)
	got := e.jobsStored()
	if len(got) != 1 || len(got[0].Tasks) != 1 || len(got[0].Tasks[0].Images) != len(keys) {
		t.Fatalf("jobs %+v", got)
	}
	for i, img := range got[0].Tasks[0].Images {
		if want := fmt.Sprintf("s3://archive/%d.png", i); img.URI != want {
			t.Errorf("image %s: uri %q, want %q", img.URL, img.URI, want)
		}
	}
}
