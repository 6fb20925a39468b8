// Command nackgen writes the NACK resources of the stream definitions in
// streams/ (embedded in the streams package) into deploy/base/nack/, one file
// per definition file plus a kustomization.yaml, and removes files of
// definitions that no longer exist. Run it from deploy/ after editing
// streams/*.yaml:
//
//	go run ./cmd/nackgen
//
// TestNACKManifestsMatchStreams fails until the output is committed.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sdevents/sdevents/deploy/nack"
	"github.com/sdevents/sdevents/streams"
)

func main() {
	out := flag.String("out", "base/nack", "directory to write the manifests to")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "nackgen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	files, err := streams.Load(streams.Files())
	if err != nil {
		return err
	}
	manifests, err := nack.Generate(files, nack.Replicas)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if _, keep := manifests[filepath.Base(p)]; !keep {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	for name, b := range manifests {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("nackgen: wrote %d files to %s\n", len(manifests), strings.TrimSuffix(dir, "/"))
	return nil
}
