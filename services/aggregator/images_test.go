package aggregator_test

import (
	"testing"
	"time"

	"github.com/sdevents/sdevents/services/aggregator/jobs"
)

// TestOnlyNamedImagesReachTheRecord: a task result carries an image only
// where a data entry names one (a generatedImageId or a url). An
// sdJobFinished with data {} and a task whose entries name nothing give a
// record without images, never a blank {image_id: "", url: ""}; the rebuild
// reads them the same way.
func TestOnlyNamedImagesReachTheRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const acct = "a_blank"
	e.start()
	e.callback("default", "sdTaskFinished", acct, "inv-1", []byte(`{"success":true,"data":{}}`))
	e.callback("default", "sdTaskFinished", acct, "inv-2",
		[]byte(`{"success":true,"data":[{},{"type":"png","width":512},{"generatedImageId":"g-2","type":"png"},{"url":"https://img.example/u.png"}]}`))
	// Not the plain shape the scanner reads: the reference parser's path.
	e.callback("default", "sdTaskFinished", acct, "inv-3", []byte(`{"success":"true","data":[{"type":"png"}]}`))
	e.callback("default", "sdJobFinished", acct, "inv-1", []byte(`{"success":true,"data":{}}`))
	e.waitJobs(10*time.Second, 1)

	check := func(what string, r jobs.Record) {
		t.Helper()
		if len(r.Tasks) != 3 {
			t.Fatalf("%s: %d tasks, want 3", what, len(r.Tasks))
		}
		if len(r.Images) != 0 {
			t.Errorf("%s: job images %+v, want none: the sdJobFinished names no image", what, r.Images)
		}
		want := map[string][]jobs.Image{
			"inv-1": nil,
			"inv-2": {{ImageID: "g-2", Type: "png"}, {URL: "https://img.example/u.png"}},
			"inv-3": nil,
		}
		for _, task := range r.Tasks {
			w := want[task.InvokeID]
			if len(task.Images) != len(w) {
				t.Errorf("%s: task %s images %+v, want %+v", what, task.InvokeID, task.Images, w)
				continue
			}
			for i := range w {
				if task.Images[i] != w[i] {
					t.Errorf("%s: task %s image %d = %+v, want %+v", what, task.InvokeID, i, task.Images[i], w[i])
				}
			}
			for _, img := range task.Images {
				if img.ImageID == "" && img.URL == "" {
					t.Errorf("%s: task %s has a blank image", what, task.InvokeID)
				}
			}
		}
	}
	got := e.jobsStored()
	if len(got) != 1 {
		t.Fatalf("%d jobs, want 1", len(got))
	}
	check("published", got[0])
	if rebuilt := e.rebuild(time.Now()); len(rebuilt.Records) != 1 {
		t.Errorf("rebuild: %d records, want 1", len(rebuilt.Records))
	} else {
		check("rebuilt", rebuilt.Records[0])
	}
}
