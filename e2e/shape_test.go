package e2e_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The import rules of the code's shape (docs/design.md, "The shape of the
// code"), checked over every package of every module of the workspace,
// tests included.

// modulePath is the path every package of the repository starts with.
const modulePath = "github.com/sdevents/sdevents/"

// protocolPackages are the pkg/ protocol packages: they import the standard
// library, golang.org/x/crypto and each other, nothing else.
var protocolPackages = []string{
	"pkg/account", "pkg/admintoken", "pkg/archiveretry", "pkg/callback",
	"pkg/contract", "pkg/quotarpc", "pkg/sns", "pkg/taskresult",
}

// domainPackages are the pure domains of the services: they import the
// standard library (no network, no HTTP) and protocol packages, nothing else.
var domainPackages = []string{"services/aggregator/jobs", "services/quota/ledger"}

// goPackage is what the rules read of `go list -json`.
type goPackage struct {
	ImportPath   string
	Standard     bool
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// goModule is what the rules read of `go mod edit -json`.
type goModule struct {
	Module  struct{ Path string }
	Require []struct{ Path string }
}

// local returns path relative to the repository ("pkg/sns"), and false for a
// path outside it.
func local(path string) (string, bool) {
	rel, ok := strings.CutPrefix(path, modulePath)
	return rel, ok
}

// serviceOf returns "services/<name>" for a package of a service (its
// domain packages included), and "" otherwise.
func serviceOf(rel string) string {
	parts := strings.SplitN(rel, "/", 3)
	if len(parts) < 2 || parts[0] != "services" {
		return ""
	}
	return parts[0] + "/" + parts[1]
}

// within reports whether rel is one of pkgs or below one of them.
func within(rel string, pkgs []string) bool {
	return slices.ContainsFunc(pkgs, func(p string) bool { return rel == p || strings.HasPrefix(rel, p+"/") })
}

func isProtocol(rel string) bool { return slices.Contains(protocolPackages, rel) }

// standard reports whether path is a standard library package: no dot in
// its first element.
func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// violation is one import that breaks a rule.
type violation struct {
	pkg, imp, rule string
}

func (v violation) String() string { return v.pkg + " imports " + v.imp + ": " + v.rule }

// checkImports applies the import rules to pkgs and returns every
// violation.
func checkImports(pkgs []goPackage) []violation {
	var out []violation
	for _, p := range pkgs {
		rel, ok := local(p.ImportPath)
		if !ok {
			continue
		}
		prod := p.Imports
		all := slices.Concat(p.Imports, p.TestImports, p.XTestImports)
		add := func(imp, rule string) { out = append(out, violation{rel, imp, rule}) }
		switch {
		case isProtocol(rel):
			for _, imp := range prod {
				ir, mine := local(imp)
				if !standard(imp) && !strings.HasPrefix(imp, "golang.org/x/crypto/") && !(mine && isProtocol(ir)) {
					add(imp, "a protocol package imports the standard library, crypto and protocol packages only")
				}
			}
			for _, imp := range all {
				if ir, mine := local(imp); mine && !strings.HasPrefix(ir, "pkg/") {
					add(imp, "a protocol package imports no service, not even in tests")
				}
			}
		case within(rel, domainPackages):
			for _, imp := range prod {
				ir, mine := local(imp)
				switch {
				case imp == "net/http" || strings.HasPrefix(imp, "net/http/"):
					add(imp, "a domain does no HTTP")
				case standard(imp), mine && (isProtocol(ir) || ir == rel || strings.HasPrefix(ir, rel+"/")):
				default:
					add(imp, "a domain imports the standard library and protocol packages only")
				}
			}
		case strings.HasPrefix(rel, "pkg/"), rel == "streams" || strings.HasPrefix(rel, "streams/"):
			for _, imp := range all {
				if ir, mine := local(imp); mine && !strings.HasPrefix(ir, "pkg/") && ir != "streams" && !strings.HasPrefix(ir, "streams/") {
					add(imp, "pkg/ and streams/ import no service, not even in tests")
				}
			}
		}
		if svc := serviceOf(rel); svc != "" {
			for _, imp := range all {
				ir, mine := local(imp)
				if other := serviceOf(ir); mine && other != "" && other != svc {
					add(imp, "services meet only on subjects: no service imports another, not even in tests")
				}
				if mine && ir == "pkg/config" {
					add(imp, "a service takes a Config of its own: it reads no configuration file, not even in tests")
				}
			}
		}
	}
	return out
}

// checkRequires returns the requirements of one service module on another.
func checkRequires(mods []goModule) []violation {
	var out []violation
	for _, m := range mods {
		rel, ok := local(m.Module.Path)
		if !ok || serviceOf(rel) != rel {
			continue
		}
		for _, r := range m.Require {
			other, mine := local(r.Path)
			if !mine || serviceOf(other) != other {
				continue
			}
			out = append(out, violation{rel, other, "no module of services/ requires another"})
		}
	}
	return out
}

// TestShapeRules holds the rule checks themselves to synthetic cases: each
// broken rule is found, and what the rules allow passes.
func TestShapeRules(t *testing.T) {
	t.Parallel()
	pkg := func(rel string, imports ...string) goPackage {
		return goPackage{ImportPath: modulePath + rel, Imports: imports}
	}
	test := func(p goPackage, imports ...string) goPackage { p.XTestImports = imports; return p }
	own := func(rel string) string { return modulePath + rel }
	for _, c := range []struct {
		name string
		pkg  goPackage
		want string // the rule broken; "" when none is
	}{
		{"protocol on stdlib, crypto and protocol", pkg("pkg/callback", "crypto/aes", "golang.org/x/crypto/hkdf", own("pkg/account")), ""},
		{"protocol on NATS", pkg("pkg/archiveretry", "github.com/nats-io/nats.go"), "protocol package imports the standard library"},
		{"protocol on echo", pkg("pkg/admintoken", "github.com/labstack/echo/v4"), "protocol package imports the standard library"},
		{"protocol on plumbing", pkg("pkg/admintoken", own("pkg/httpserver")), "protocol package imports the standard library"},
		{"protocol on a service", pkg("pkg/contract", own("services/archiver")), "protocol package imports no service"},
		{"protocol test on a service", test(pkg("pkg/sns"), own("services/ingress")), "protocol package imports no service"},
		{"protocol test on plumbing", test(pkg("pkg/sns"), own("pkg/sns/snstest")), ""},
		{"plumbing on NATS and protocol", pkg("pkg/event", "github.com/nats-io/nats.go", own("pkg/callback")), ""},
		{"plumbing on a service", pkg("pkg/natsauth", own("services/quota")), "pkg/ and streams/ import no service"},
		{"plumbing test on a service", test(pkg("pkg/natstest"), own("services/ingress")), "pkg/ and streams/ import no service"},
		{"streams test on a service", test(pkg("streams"), own("services/archiver")), "pkg/ and streams/ import no service"},
		{"domain on protocol", pkg("services/quota/ledger", "time", own("pkg/contract"), own("pkg/quotarpc")), ""},
		{"domain on NATS", pkg("services/aggregator/jobs", "github.com/nats-io/nats.go/jetstream"), "domain imports the standard library"},
		{"domain on HTTP", pkg("services/quota/ledger", "net/http"), "domain does no HTTP"},
		{"domain on MinIO", pkg("services/aggregator/jobs", "github.com/minio/minio-go/v7"), "domain imports the standard library"},
		{"domain on plumbing", pkg("services/quota/ledger", own("pkg/event")), "domain imports the standard library"},
		{"domain on its adapter", pkg("services/quota/ledger", own("services/quota")), "domain imports the standard library"},
		{"adapter on its domain and pkg", pkg("services/aggregator", own("services/aggregator/jobs"), own("pkg/event"), own("streams")), ""},
		{"service on another", pkg("services/archiver", own("services/aggregator")), "no service imports another"},
		{"service on another's domain", pkg("services/console", own("services/aggregator/jobs")), "no service imports another"},
		{"service test on another", test(pkg("services/aggregator"), own("services/ingress")), "no service imports another"},
		{"service on the file", pkg("services/quota", own("pkg/config")), "a service takes a Config of its own"},
		{"service test on the file", test(pkg("services/ingress"), own("pkg/config")), "a service takes a Config of its own"},
		{"binary on the file", pkg("cmd/sdevents", own("pkg/config")), ""},
		{"binary on every service", pkg("cmd/sdevents", own("services/quota"), own("services/console")), ""},
		{"end-to-end tests on services", test(pkg("e2e"), own("services/quota"), own("services/ingress")), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := checkImports([]goPackage{c.pkg})
			switch {
			case c.want == "" && len(got) > 0:
				t.Errorf("allowed imports refused: %v", got)
			case c.want != "" && !slices.ContainsFunc(got, func(v violation) bool { return strings.Contains(v.rule, c.want) }):
				t.Errorf("want a violation %q, got %v", c.want, got)
			}
		})
	}

	mod := func(path string, requires ...string) goModule {
		var m goModule
		m.Module.Path = modulePath + path
		for _, r := range requires {
			m.Require = append(m.Require, struct{ Path string }{modulePath + r})
		}
		return m
	}
	if got := checkRequires([]goModule{mod("services/archiver", "pkg", "streams"), mod("cmd/sdevents", "services/quota")}); len(got) > 0 {
		t.Errorf("allowed requirements refused: %v", got)
	}
	if got := checkRequires([]goModule{mod("services/aggregator", "pkg", "services/archiver")}); len(got) != 1 {
		t.Errorf("a service module requiring another: %v, want one violation", got)
	}
}

// TestShape checks every package and module of the workspace against the
// import rules. A violation names the package, the import and the rule:
// move the code to where the rule allows the import, or depend on a smaller
// interface declared where it is used.
func TestShape(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	gowork := filepath.Join(root, "go.work")
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOWORK="+gowork)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return out
	}

	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(run("list", "-e", "-json=ImportPath,Standard,Imports,TestImports,XTestImports", modulePath+"...")))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if !slices.ContainsFunc(pkgs, func(p goPackage) bool { return p.ImportPath == modulePath+"services/quota/ledger" }) {
		t.Fatalf("go list found %d packages, not the workspace's", len(pkgs))
	}
	for _, rel := range slices.Concat(protocolPackages, domainPackages) {
		if !slices.ContainsFunc(pkgs, func(p goPackage) bool { return p.ImportPath == modulePath+rel }) {
			t.Errorf("%s is named by a rule but is not a package", rel)
		}
	}
	for _, v := range checkImports(pkgs) {
		t.Error(v)
	}

	var mods []goModule
	for _, dir := range strings.Fields(string(run("list", "-m", "-f", "{{.Dir}}"))) {
		var m goModule
		if err := json.Unmarshal(run("mod", "edit", "-json", filepath.Join(dir, "go.mod")), &m); err != nil {
			t.Fatal(err)
		}
		mods = append(mods, m)
	}
	for _, v := range checkRequires(mods) {
		t.Error(v)
	}
	t.Logf("%d packages, %d modules checked", len(pkgs), len(mods))
}
