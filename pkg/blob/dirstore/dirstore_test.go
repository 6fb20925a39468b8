package dirstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdevents/sdevents/pkg/blob"
	"github.com/sdevents/sdevents/pkg/blob/blobtest"
	"github.com/sdevents/sdevents/pkg/blob/dirstore"
)

func TestContract(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) blobtest.Store {
		s, err := dirstore.New(filepath.Join(t.TempDir(), "archive"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestLayout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := dirstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.EnsureReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "a/b.png", strings.NewReader("img"), 3, blob.PutMeta{ContentType: "image/png",
		Metadata: map[string]string{"Width": "1"}}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a", "b.png")); err != nil || string(b) != "img" {
		t.Fatalf("content file: %q %v", b, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "a", "b.png.meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sc map[string]any
	if err := json.Unmarshal(raw, &sc); err != nil || sc["sha256"] == nil || sc["size"] != 3.0 || sc["content_type"] != "image/png" {
		t.Fatalf("sidecar %s: %v", raw, err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "a"))
	if len(ents) != 2 {
		t.Fatalf("left files behind: %v", ents)
	}
	if u := s.URI("a/b.png"); u != "file://"+filepath.ToSlash(filepath.Join(dir, "a", "b.png")) {
		t.Fatalf("URI = %s", u)
	}
}

// A crash between the content and the sidecar rename leaves content whose
// sidecar disagrees: that object does not exist.
func TestHalfWrittenIsAbsent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := dirstore.New(dir)
	ctx := context.Background()
	if _, err := s.Put(ctx, "x.png", strings.NewReader("old"), 3, blob.PutMeta{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x.png"), []byte("newer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "x.png"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatal("Stat found a half-written object")
	}
	if err := os.WriteFile(filepath.Join(dir, "y.png"), []byte("orphan"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "y.png"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatal("Stat found content without sidecar")
	}
}
