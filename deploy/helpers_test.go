package deploy

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
	"sigs.k8s.io/yaml"

	"github.com/sdevents/sdevents/pkg/config"
)

// repoRoot is the repository root: the tests run in deploy/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

// readFile returns the content of a file given relative to the repository root.
func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// workModules returns the module directories go.work uses, relative to the
// repository root and slash-separated ("cmd/sdevents"), and its go version.
func workModules(t *testing.T) (dirs []string, goVersion string) {
	t.Helper()
	wf, err := modfile.ParseWork("go.work", readFile(t, "go.work"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range wf.Use {
		dirs = append(dirs, strings.TrimPrefix(filepath.ToSlash(filepath.Clean(u.Path)), "./"))
	}
	return dirs, wf.Go.Version
}

// natsServerMinor is the major.minor of the nats-server module the binary
// embeds and the tests run ("2.15").
func natsServerMinor(t *testing.T) string {
	t.Helper()
	mf, err := modfile.Parse("go.mod", readFile(t, "cmd/sdevents/go.mod"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range mf.Require {
		if r.Mod.Path == "github.com/nats-io/nats-server/v2" {
			if m := regexp.MustCompile(`^v(\d+\.\d+)\.`).FindStringSubmatch(r.Mod.Version); m != nil {
				return m[1]
			}
		}
	}
	t.Fatal("cmd/sdevents/go.mod does not require nats-server")
	return ""
}

// decodeStrictJSON decodes JSON into v; with strict, fields v does not have
// are an error, without, numbers stay json.Number.
func decodeStrictJSON(j []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(j))
	if strict {
		dec.DisallowUnknownFields()
	} else {
		dec.UseNumber()
	}
	return dec.Decode(v)
}

// decodeStrict decodes a YAML document into v through JSON, as the API server
// sees it (sigs.k8s.io/yaml), refusing fields v does not have.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	return decodeStrictJSON(j, v, true)
}

// loadConfigAs loads the sdevents configuration the way a container sees it:
// files maps each path mounted in the container (config file, secret files)
// to its content, env is the container's environment and configPath the
// --config/SDEVENTS_CONFIG path. The files are written under a temporary
// directory and every mention of a mounted path, in env and in the files, is
// rewritten to point there, so that pkg/config.Load reads exactly the mounted
// content.
func loadConfigAs(t *testing.T, files map[string][]byte, env map[string]string, configPath string) (config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	paths := slices.SortedFunc(maps.Keys(files), func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, p := range paths { // longest first: one mounted path may prefix another
		pairs = append(pairs, p, filepath.Join(dir, p))
	}
	rewrite := strings.NewReplacer(pairs...).Replace
	for p, b := range files {
		host := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(host, []byte(rewrite(string(b))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	local := map[string]string{}
	for k, v := range env {
		local[k] = rewrite(v)
	}
	if _, ok := files[configPath]; !ok {
		t.Fatalf("the configuration %s is not mounted", configPath)
	}
	return config.Load(filepath.Join(dir, configPath), local)
}
