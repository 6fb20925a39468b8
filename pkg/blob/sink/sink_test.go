package sink_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sdevents/sdevents/pkg/blob/s3store"
	"github.com/sdevents/sdevents/pkg/blob/sink"
)

// TestOpen: a bucket endpoint wins over a directory; a directory is made
// by EnsureReady only; with neither, Open fails with ErrNoSink.
func TestOpen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "archive")
	s, err := sink.Open(sink.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.URI("a/b.png"), "file://"+dir+"/a/b.png"; got != want {
		t.Fatalf("URI %q, want %q", got, want)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open made the directory: %v", err)
	}
	if err := s.EnsureReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("EnsureReady: %v", err)
	}

	b, err := sink.Open(sink.Config{Dir: dir, S3: s3store.Config{Endpoint: "127.0.0.1:9", Bucket: "sd-archive", AccessKey: "k", SecretKey: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.URI("a/b.png"); got != "s3://sd-archive/a/b.png" {
		t.Fatalf("URI %q", got)
	}

	if _, err := sink.Open(sink.Config{}); !errors.Is(err, sink.ErrNoSink) {
		t.Fatalf("Open without a sink: %v", err)
	}
}
