package taskresult_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sdevents/sdevents/pkg/taskresult"
)

// The seed corpora are checked in under testdata/fuzz/<FuzzName>/.

// FuzzParseSNSMessage: ParseSNSMessage never panics and its result is
// consistent: a known status, every parsed image among the URLs, and a numeric
// id never in float formatting.
func FuzzParseSNSMessage(f *testing.F) {
	f.Add(`{"id":"t","result":true,"image_url":["s3://b/k"],"context":{"account":"a","job_id":1}}`)
	f.Fuzz(func(t *testing.T, message string) {
		r := taskresult.ParseSNSMessage(message)
		switch r.Status {
		case taskresult.StatusUnknown, taskresult.StatusRunning, taskresult.StatusCompleted, taskresult.StatusFailed:
		default:
			t.Fatalf("status %q", r.Status)
		}
		if len(r.Images) > len(r.ImageURLs) {
			t.Fatalf("%d images from %d URLs", len(r.Images), len(r.ImageURLs))
		}
		for _, img := range r.Images {
			if !slices.Contains(r.ImageURLs, img.String()) {
				t.Fatalf("image %v not among %q", img, r.ImageURLs)
			}
		}
		if strings.Contains(r.ID, "e+") || strings.Contains(r.JobID, "e+") {
			t.Fatalf("float formatting: id %q, job %q", r.ID, r.JobID)
		}
	})
}

// FuzzParseCallbackResult: ParseCallbackResult never panics and sizes are
// never negative.
func FuzzParseCallbackResult(f *testing.F) {
	f.Add([]byte(`{"success":true,"data":[{"generatedImageId":"i","width":"512","height":512}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := taskresult.ParseCallbackResult(body)
		for _, img := range r.Images {
			if img.Width < 0 || img.Height < 0 {
				t.Fatalf("size %dx%d", img.Width, img.Height)
			}
		}
	})
}

// TestFuzzCorpusPresent keeps the checked-in seed corpora from vanishing.
func TestFuzzCorpusPresent(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"FuzzParseSNSMessage", "FuzzParseCallbackResult", "FuzzSummarizeCallbackResult"} {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", name, "*"))
		if err != nil || len(files) < 3 {
			t.Errorf("%s: %d corpus files (%v)", name, len(files), err)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil || !strings.HasPrefix(string(b), "go test fuzz v1\n") {
				t.Errorf("%s: not a fuzz corpus file (%v)", file, err)
			}
		}
	}
}
