package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sdevents/sdevents/deploy/nack"
	"github.com/sdevents/sdevents/streams"
)

// TestNACKManifestsMatchStreams regenerates the NACK resources from the
// stream definitions (the embedded streams/*.yaml the services apply) and
// compares them, file by file and byte for byte, with base/nack: a change to
// streams/ without `go run ./cmd/nackgen` fails here.
func TestNACKManifestsMatchStreams(t *testing.T) {
	t.Parallel()
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	want, err := nack.Generate(files, nack.Replicas)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("base", "nack")
	committed, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range committed {
		names = append(names, filepath.Base(p))
	}
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s/%s differs from streams/ (%v): run `go run ./cmd/nackgen` in deploy/", dir, name, err)
		}
	}
	for _, name := range names {
		if _, ok := want[name]; !ok {
			t.Errorf("%s/%s has no definition in streams/: run `go run ./cmd/nackgen` in deploy/", dir, name)
		}
	}
	if !slices.Contains(names, nack.Kustomization) {
		t.Errorf("%s has no %s", dir, nack.Kustomization)
	}
}
