package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"go/version"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// instruction is one Dockerfile instruction as BuildKit's parser reads it.
type instruction struct {
	cmd   string   // lower case: "from", "copy", "run", ...
	args  []string // the arguments, JSON form or not
	flags []string // --from=..., --mount=...
	line  int
}

// stage is one FROM ... [AS name] and the instructions that follow it.
type stage struct {
	image, name string
	body        []instruction
}

// dockerfile is a parsed Dockerfile: the global ARG defaults and the stages.
type dockerfile struct {
	args   map[string]string
	stages []stage
}

// parseDockerfile parses src with BuildKit's own parser.
func parseDockerfile(src []byte) (dockerfile, error) {
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return dockerfile{}, err
	}
	df := dockerfile{args: map[string]string{}}
	for _, n := range res.AST.Children {
		in := instruction{cmd: strings.ToLower(n.Value), flags: n.Flags, line: n.StartLine}
		for a := n.Next; a != nil; a = a.Next {
			in.args = append(in.args, a.Value)
		}
		switch {
		case in.cmd == "from":
			s := stage{image: in.args[0]}
			if len(in.args) == 3 && strings.EqualFold(in.args[1], "as") {
				s.name = in.args[2]
			}
			df.stages = append(df.stages, s)
		case len(df.stages) == 0 && in.cmd == "arg":
			if k, v, ok := strings.Cut(in.args[0], "="); ok {
				df.args[k] = v
			}
		case len(df.stages) > 0:
			last := &df.stages[len(df.stages)-1]
			last.body = append(last.body, in)
		}
	}
	return df, nil
}

// expand replaces ${NAME} and $NAME by the global ARG defaults.
func (df dockerfile) expand(s string) string {
	return os.Expand(s, func(k string) string { return df.args[k] })
}

// copies returns the files a COPY instruction puts into the image, as paths
// relative to workdir, keyed by their source.
func copies(in instruction, workdir string) map[string]string {
	srcs, dest := in.args[:len(in.args)-1], in.args[len(in.args)-1]
	dir := strings.HasSuffix(dest, "/") || len(srcs) > 1
	if !path.IsAbs(dest) {
		dest = path.Join(workdir, dest)
	}
	out := map[string]string{}
	for _, s := range srcs {
		d := dest
		if dir {
			d = path.Join(dest, path.Base(s))
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(d, workdir), "/")
		out[path.Clean(s)] = rel
	}
	return out
}

// checkDockerfile applies the image rules to a parsed Dockerfile:
//
//   - the builder is golang at go.work's Go version or newer;
//   - go.work, go.work.sum and every module's go.mod (and go.sum, when the
//     module has one) are copied to their own paths before `go mod download`,
//     and nothing else is copied before it (the download layer's cache key);
//   - the binary is built static (CGO_ENABLED=0, -trimpath, -ldflags '-s -w')
//     from ./cmd/sdevents after the sources are copied, stamped with the
//     build arguments VERSION, REVISION and BUILD_DATE (-X main.version=…),
//     declared in the build stage;
//   - the final stage is distroless/static or scratch, runs as a numeric
//     non-root user, exposes 8080 and has ENTRYPOINT ["/sdevents"].
//
// hasSum reports whether a module directory has a go.sum.
func checkDockerfile(df dockerfile, modules []string, goVersion string, hasSum func(dir string) bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(df.stages) < 2 {
		return []error{errors.New("want a multi-stage build (builder and final stage)")}
	}
	build, final := df.stages[0], df.stages[len(df.stages)-1]

	img := df.expand(build.image)
	tag, ok := strings.CutPrefix(img, "golang:")
	if !ok {
		bad("builder %q: want golang:<version>", img)
	} else if v := regexp.MustCompile(`^\d+\.\d+(\.\d+)?`).FindString(tag); v == "" || version.Compare("go"+v, "go"+goVersion) < 0 {
		bad("builder %q: want Go %s or newer (go.work)", img, goVersion)
	}

	want := map[string]bool{"go.work": true, "go.work.sum": true}
	for _, m := range modules {
		want[path.Join(m, "go.mod")] = true
		if hasSum(m) {
			want[path.Join(m, "go.sum")] = true
		}
	}
	workdir, downloaded, sourced, built, cgoOff := "/", false, false, false, false
	args := map[string]bool{} // the build stage's ARGs so far
	for _, in := range build.body {
		switch in.cmd {
		case "arg":
			for _, a := range in.args {
				args[strings.SplitN(a, "=", 2)[0]] = true
			}
		case "workdir":
			workdir = path.Join(workdir, in.args[0])
		case "env":
			for i := 0; i+1 < len(in.args); i += 3 { // name, value, separator
				if in.args[i] == "CGO_ENABLED" && in.args[i+1] == "0" {
					cgoOff = true
				}
			}
		case "copy":
			for src, dst := range copies(in, workdir) {
				switch {
				case src == ".":
					sourced = true
				case downloaded:
				case !want[src] && !strings.HasSuffix(src, "go.mod") && !strings.HasSuffix(src, "go.sum"):
					bad("line %d: %s is copied before `go mod download`: only module files belong there", in.line, src)
				case src != dst:
					bad("line %d: %s is copied to %s, not to its own path", in.line, src, dst)
				default:
					delete(want, src)
				}
			}
		case "run":
			cmd := strings.Join(in.args, " ")
			if strings.Contains(cmd, "go mod download") {
				downloaded = true
				for _, f := range slices.Sorted(maps.Keys(want)) {
					bad("%s is not copied before `go mod download` (line %d)", f, in.line)
				}
			}
			if strings.Contains(cmd, "go build") && strings.Contains(cmd, "./cmd/sdevents") {
				built = sourced
				if strings.Contains(cmd, "CGO_ENABLED=0") {
					cgoOff = true
				}
				// The command of ./cmd/sdevents alone, of a RUN that may build more.
				i := slices.IndexFunc(strings.Split(cmd, "&&"), func(c string) bool { return strings.Contains(c, "./cmd/sdevents") })
				sd := strings.Split(cmd, "&&")[i]
				ldflags := regexp.MustCompile(`-ldflags=(?:'([^']*)'|"([^"]*)")`).FindStringSubmatch(sd)
				if !strings.Contains(sd, "-trimpath") {
					bad("line %d: go build of ./cmd/sdevents without -trimpath", in.line)
				}
				if ldflags == nil || !strings.HasPrefix(ldflags[1]+ldflags[2], "-s -w") {
					bad("line %d: go build of ./cmd/sdevents without -ldflags '-s -w'", in.line)
				}
				for v, arg := range map[string]string{"version": "VERSION", "revision": "REVISION", "buildDate": "BUILD_DATE"} {
					if ldflags == nil || !strings.Contains(ldflags[2], "-X main."+v+"=${"+arg+"}") {
						bad("line %d: go build of ./cmd/sdevents does not stamp main.%s with the build argument %s", in.line, v, arg)
					} else if !args[arg] {
						bad("line %d: the build argument %s is not declared (ARG) in the build stage before it is used", in.line, arg)
					}
				}
			}
		}
	}
	if !downloaded {
		bad("the builder never runs `go mod download`")
	}
	if !built {
		bad("the builder does not build ./cmd/sdevents after copying the sources (COPY . .)")
	}
	if !cgoOff {
		bad("the builder does not set CGO_ENABLED=0: the binary would not be static")
	}

	fimg := df.expand(final.image)
	if fimg != "scratch" && !strings.HasPrefix(fimg, "gcr.io/distroless/static") {
		bad("final stage %q: want gcr.io/distroless/static* or scratch (static, no shell)", fimg)
	}
	user, entry, exposed := "", "", false
	for _, in := range final.body {
		switch in.cmd {
		case "user":
			user = in.args[0]
		case "entrypoint":
			entry = strings.Join(in.args, " ")
		case "expose":
			exposed = exposed || slices.Contains(in.args, "8080")
		case "copy":
			if !slices.ContainsFunc(in.flags, func(f string) bool { return f == "--from="+build.name }) {
				bad("line %d: the final stage copies from the build context, not from the builder", in.line)
			}
		}
	}
	if !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(user) {
		bad("final stage USER %q: want a numeric non-root uid[:gid]", user)
	}
	if entry != "/sdevents" {
		bad("final stage ENTRYPOINT %q: want [\"/sdevents\"]", entry)
	}
	if !exposed {
		bad("final stage does not EXPOSE 8080")
	}
	return errs
}

// TestDockerfile checks the repository's Dockerfile against the image rules
// of checkDockerfile, with go.work's modules.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	df, err := parseDockerfile(readFile(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	modules, goVersion := workModules(t)
	if !slices.Contains(modules, "deploy") {
		// This module is added to go.work with the Dockerfile; check it too.
		modules = append(modules, "deploy")
	}
	hasSum := func(dir string) bool {
		_, err := os.Stat(filepath.Join(root, dir, "go.sum"))
		return err == nil
	}
	for _, err := range checkDockerfile(df, modules, goVersion, hasSum) {
		t.Error(err)
	}
	// compose.yaml's health checks run /healthcheck (the image has no shell).
	final := df.stages[len(df.stages)-1]
	if !slices.ContainsFunc(final.body, func(in instruction) bool {
		return in.cmd == "copy" && in.args[len(in.args)-1] == "/healthcheck"
	}) {
		t.Error("the final stage has no /healthcheck, which compose.yaml's health checks run")
	}
}

// TestDockerfileRules proves that checkDockerfile catches what it is for:
// each case breaks the repository's Dockerfile in one way.
func TestDockerfileRules(t *testing.T) {
	t.Parallel()
	good := string(readFile(t, "Dockerfile"))
	modules, goVersion := workModules(t)
	modules = append(slices.DeleteFunc(modules, func(m string) bool { return m == "deploy" }), "deploy")
	all := func(string) bool { return true }
	cases := []struct {
		name, old, new, want string
	}{
		{"module not copied", "COPY services/quota/go.mod services/quota/go.sum services/quota/\n", "", "services/quota/go.mod is not copied"},
		{"go.sum not copied", "COPY pkg/go.mod pkg/go.sum pkg/", "COPY pkg/go.mod pkg/", "pkg/go.sum is not copied"},
		{"copied elsewhere", "COPY streams/go.mod streams/go.sum streams/", "COPY streams/go.mod streams/go.sum ./", "not to its own path"},
		{"source before download", "RUN go mod download", "COPY pkg/ pkg/\nRUN go mod download", "only module files"},
		{"root user", "USER 65532:65532", "USER root", "non-root"},
		{"shell image", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM alpine:3.22", "static"},
		{"old Go", "ARG GO_VERSION=1.26.8", "ARG GO_VERSION=1.25", "or newer"},
		{"cgo", "CGO_ENABLED=0 ", "", "CGO_ENABLED=0"},
		{"unstamped", " -X main.revision=${REVISION}", "", "does not stamp main.revision"},
		{"argument not declared", "ARG BUILD_DATE=\"\"\n", "", "BUILD_DATE is not declared"},
		{"not stripped", `-ldflags="-s -w -X`, `-ldflags="-X`, "without -ldflags '-s -w'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(good, c.old) {
				t.Fatalf("the Dockerfile no longer contains %q: update the case", c.old)
			}
			df, err := parseDockerfile([]byte(strings.Replace(good, c.old, c.new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			errs := checkDockerfile(df, modules, goVersion, all)
			if !strings.Contains(fmt.Sprint(errs), c.want) {
				t.Errorf("errors %v, want one containing %q", errs, c.want)
			}
		})
	}
}

// TestDockerignore checks that .dockerignore, read the way the Docker CLI
// reads it, keeps every file the Dockerfile needs in the build context and
// leaves local state out.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	patterns, err := ignorefile.ReadAll(bytes.NewReader(readFile(t, ".dockerignore")))
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	modules, _ := workModules(t)
	keep := []string{"go.work", "go.work.sum", "cmd/sdevents/main.go", "deploy/cmd/healthcheck/main.go", "streams/ingress.yaml"}
	for _, m := range append(modules, "deploy") {
		keep = append(keep, path.Join(m, "go.mod"), path.Join(m, "go.sum"))
	}
	for _, f := range keep {
		if ex, err := pm.MatchesOrParentMatches(f); err != nil || ex {
			t.Errorf("%s is excluded from the build context (err %v)", f, err)
		}
	}
	for _, f := range []string{".git/HEAD", ".tools/bin/minio", "bin/sdevents", "data/nats/x", "cmd/sdevents/sdevents", "deploy/compose/secrets/callback-sk"} {
		if ex, err := pm.MatchesOrParentMatches(f); err != nil || !ex {
			t.Errorf("%s is in the build context; exclude it (err %v)", f, err)
		}
	}
}
