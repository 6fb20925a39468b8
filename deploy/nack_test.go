package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sdevents/sdevents/deploy/nack"
	"github.com/sdevents/sdevents/pkg/config"
	"github.com/sdevents/sdevents/pkg/contract"
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

// TestDefinitionsHoldTheConfiguredDefaults: the limits the definition files
// give JOBS, ARCHIVE and QUOTA are the defaults of streams.jobs,
// streams.archive and streams.quota, so that the NACK resources generated
// from the files (base/nack) are what a process applies with the default
// configuration.
func TestDefinitionsHoldTheConfiguredDefaults(t *testing.T) {
	t.Parallel()
	d := config.Default().Streams
	files, err := streams.Load(streams.Files())
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]config.StreamLimits{contract.StreamJobs: d.Jobs, contract.StreamArchive: d.Archive, contract.StreamQuota: d.Quota} {
		i := slices.IndexFunc(files, func(f streams.File) bool { return f.Stream != nil && f.Stream.Name == name })
		if i < 0 {
			t.Fatalf("no definition of %s", name)
		}
		s := files[i].Stream
		if time.Duration(s.MaxAge) != l.MaxAge.D() || s.MaxBytes != l.MaxBytes {
			t.Errorf("%s: the definition has max_age %s, max_bytes %d; the configuration's default is %s, %d",
				name, time.Duration(s.MaxAge), s.MaxBytes, l.MaxAge.D(), l.MaxBytes)
		}
	}
	if i := slices.IndexFunc(files, func(f streams.File) bool { return f.Stream != nil && f.Stream.Name == contract.StreamQuota }); !files[i].Stream.Lossless {
		t.Error("QUOTA is not lossless")
	}
}
