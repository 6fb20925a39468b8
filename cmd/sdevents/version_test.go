package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/sdevents/sdevents/pkg/proctest"
)

func TestDescribeBuild(t *testing.T) {
	t.Parallel()
	const rev = "0123456789abcdef0123456789abcdef01234567"
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	devel := debug.Module{Path: "github.com/sdevents/sdevents/cmd/sdevents", Version: "(devel)"}
	for _, tc := range []struct {
		name    string
		stamped buildInfo
		bi      *debug.BuildInfo
		want    buildInfo
	}{
		{
			name:    "stamped",
			stamped: buildInfo{Version: "v1.4.0-2-gabc1234-dirty", Revision: "abc1234", Date: "2026-01-02T03:04:05Z"},
			bi:      &debug.BuildInfo{GoVersion: "go1.26.8", Main: devel, Settings: vcs("false")},
			want:    buildInfo{Version: "v1.4.0-2-gabc1234-dirty", Revision: "abc1234", Date: "2026-01-02T03:04:05Z", GoVersion: "go1.26.8"},
		},
		{
			name:    "stamped version, revision from the toolchain",
			stamped: buildInfo{Version: "v1.4.0"},
			bi:      &debug.BuildInfo{GoVersion: "go1.26.8", Main: devel, Settings: vcs("false")},
			want:    buildInfo{Version: "v1.4.0", Revision: rev, GoVersion: "go1.26.8"},
		},
		{
			name: "go install of a release",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: devel.Path, Version: "v1.4.0"}},
			want: buildInfo{Version: "v1.4.0", GoVersion: "go1.26.8"},
		},
		{
			name: "pseudo-version from the VCS",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: devel.Path, Version: "v0.0.0-20260102030405-0123456789ab+dirty"},
				Settings: vcs("true")},
			want: buildInfo{Version: "v0.0.0-20260102030405-0123456789ab+dirty", Revision: rev, GoVersion: "go1.26.8"},
		},
		{
			name: "devel with a clean revision",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: devel, Settings: vcs("false")},
			want: buildInfo{Version: "devel-0123456789ab", Revision: rev, GoVersion: "go1.26.8"},
		},
		{
			name: "devel with local changes",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: devel, Settings: vcs("true")},
			want: buildInfo{Version: "devel-0123456789ab-dirty", Revision: rev, GoVersion: "go1.26.8"},
		},
		{
			name: "devel without VCS information",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: devel},
			want: buildInfo{Version: "devel", GoVersion: "go1.26.8"},
		},
		{
			name: "no build information",
			want: buildInfo{Version: "devel", GoVersion: runtime.Version()},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.want.Platform = runtime.GOOS + "/" + runtime.GOARCH
			if got := describeBuild(tc.stamped, tc.bi); got != tc.want {
				t.Errorf("describeBuild = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestAnnounce: the first line is written whatever the level filters out,
// as an info line with the version, and the gauge is registered.
func TestAnnounce(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	announce(zerolog.New(&logs).Level(zerolog.ErrorLevel), reg)
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	b := currentBuild()
	if line["level"] != "info" || line["message"] != "sdevents starting" || line["version"] != b.Version || line["go"] != b.GoVersion {
		t.Errorf("first line %v, want the version of %+v", line, b)
	}
	if got, want := gatherBuildInfo(t, reg), buildInfoLabels(b); got != want {
		t.Errorf("sdevents_build_info %s, want %s", got, want)
	}
}

func TestBuildInfoGauge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		b    buildInfo
		want string
	}{
		{buildInfo{Version: "v1.4.0", Revision: "abc1234", GoVersion: "go1.26.8"}, `{goversion="go1.26.8",revision="abc1234",version="v1.4.0"} 1`},
		{buildInfo{Version: "devel", GoVersion: "go1.26.8"}, `{goversion="go1.26.8",revision="unknown",version="devel"} 1`},
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(buildInfoGauge(tc.b))
		if got := gatherBuildInfo(t, reg); got != tc.want {
			t.Errorf("%+v: sdevents_build_info %s, want %s", tc.b, got, tc.want)
		}
	}
}

// gatherBuildInfo returns the sdevents_build_info lines of what reg serves
// on /metrics, without the name: `{labels} value`.
func gatherBuildInfo(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var out []string
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "sdevents_build_info"); ok {
			out = append(out, v)
		}
	}
	return strings.Join(out, "\n")
}

// buildInfoLabels is what gatherBuildInfo returns for b.
func buildInfoLabels(b buildInfo) string {
	return fmt.Sprintf("{goversion=%q,revision=%q,version=%q} 1", b.GoVersion, cmp.Or(b.Revision, "unknown"), b.Version)
}

// testStamp is what the stamped binary of the tests carries.
var testStamp = buildInfo{Version: "v9.8.7-3-gfeedbee-dirty", Revision: "feedbee0123456789abcdef0123456789abcdef0", Date: "2026-01-02T03:04:05Z"}

// TestVersionStamped builds the binary as make build does, with the values
// stamped by -ldflags -X, and finds them in `sdevents version`, in
// `sdevents --version`, in the first log line of `sdevents run` (at log
// level warn) and in sdevents_build_info on its /metrics.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary: not in -short")
	}
	t.Parallel()
	bin := buildBinary(t, "-X main.version="+testStamp.Version+" -X main.revision="+testStamp.Revision+" -X main.buildDate="+testStamp.Date)
	want := "sdevents " + testStamp.Version + "\nrevision: " + testStamp.Revision + "\nbuilt:    " + testStamp.Date +
		"\ngo:       " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if got := runOutput(t, bin, args...); got != want {
			t.Errorf("sdevents %s:\n%s\nwant:\n%s", args[0], got, want)
		}
	}

	t.Run("run", func(t *testing.T) {
		dir := t.TempDir()
		httpAddr := proctest.FreeAddr(t)
		logPath := filepath.Join(dir, "run.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		defer logFile.Close()
		cmd := exec.Command(bin, "run", "--config", filepath.Join("..", "..", "sdevents.example.yaml"))
		cmd.Env = append(os.Environ(),
			"SDEVENTS_HTTP_ADDR="+httpAddr,
			"SDEVENTS_NATS_EMBEDDED_ADDR="+proctest.FreeAddr(t),
			"SDEVENTS_NATS_EMBEDDED_STORE_DIR="+filepath.Join(dir, "nats"),
			"SDEVENTS_ARCHIVE_DIR="+filepath.Join(dir, "archive"),
			"SDEVENTS_LOG_LEVEL=warn",
		)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stopped := false
		t.Cleanup(func() {
			if !stopped {
				_ = cmd.Process.Kill()
				<-exited
			}
		})
		metrics := scrapeWhenReady(t, httpAddr, exited, logPath)
		wantMetric := `sdevents_build_info{goversion="` + runtime.Version() + `",revision="` + testStamp.Revision + `",version="` + testStamp.Version + `"} 1`
		if !strings.Contains(metrics, "\n"+wantMetric+"\n") {
			t.Errorf("/metrics has no %s:\n%s", wantMetric, grepLines(metrics, "sdevents_build_info"))
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		stopped = true
		if err := <-exited; err != nil {
			t.Errorf("sdevents run after SIGTERM: %v\n%s", err, readFile(t, logPath))
		}
		first, _, _ := strings.Cut(readFile(t, logPath), "\n")
		var line map[string]any
		if err := json.Unmarshal([]byte(first), &line); err != nil {
			t.Fatalf("first log line %q: %v", first, err)
		}
		if line["message"] != "sdevents starting" || line["level"] != "info" || line["version"] != testStamp.Version ||
			line["revision"] != testStamp.Revision || line["go"] != runtime.Version() {
			t.Errorf("first log line %s, want the stamped version", first)
		}
	})
}

// TestVersionNotStamped builds the binary without -ldflags: `sdevents
// version` reports what the toolchain recorded in the binary, as `go version
// -m` reads it (the main module's version, the VCS revision and whether the
// tree was modified, when the build had them).
func TestVersionNotStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary: not in -short")
	}
	t.Parallel()
	bin := buildBinary(t, "")
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	goVersion, modVersion, rev, modified := "", "", "", false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && strings.HasSuffix(f[0], ":"):
			goVersion = f[1]
		case len(f) >= 3 && f[0] == "mod":
			modVersion = f[2]
		case len(f) == 2 && f[0] == "build":
			k, v, _ := strings.Cut(f[1], "=")
			switch k {
			case "vcs.revision":
				rev = v
			case "vcs.modified":
				modified = v == "true"
			}
		}
	}
	want := "sdevents devel\n"
	switch {
	case modVersion != "(devel)":
		want = "sdevents " + modVersion + "\n"
	case rev != "" && modified:
		want = "sdevents devel-" + rev[:12] + "-dirty\n"
	case rev != "":
		want = "sdevents devel-" + rev[:12] + "\n"
	}
	if rev != "" {
		want += "revision: " + rev + "\n"
	}
	want += "go:       " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	t.Logf("go version -m: module version %s, revision %q, modified %v", modVersion, rev, modified)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if got := runOutput(t, bin, args...); got != want {
			t.Errorf("sdevents %s:\n%s\nwant:\n%s", args[0], got, want)
		}
	}
}

// buildBinary builds this package into a temporary directory of the test,
// with ldflags when not empty, and returns the binary's path.
func buildBinary(t *testing.T, ldflags string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sdevents")
	args := []string{"build", "-o", bin}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runOutput runs bin with args and returns its standard output; it fails the
// test when bin fails or writes to standard error.
func runOutput(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("sdevents %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// scrapeWhenReady polls /readyz on addr until it answers 200, then returns
// the body of /metrics. It fails with the process's log when the process
// exits first or is not ready within two minutes.
func scrapeWhenReady(t *testing.T, addr string, exited <-chan error, logPath string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if code, _ := get("/readyz"); code == http.StatusOK {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("sdevents run exited before it was ready (%v):\n%s", err, readFile(t, logPath))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sdevents run not ready on %s within 2 minutes:\n%s", addr, readFile(t, logPath))
		}
	}
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	return body
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
