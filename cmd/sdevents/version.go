package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// version, revision and buildDate are stamped by the linker (make build):
//
//	go build -ldflags "-X main.version=$(git describe --tags --always --dirty) \
//	    -X main.revision=$(git rev-parse HEAD) -X main.buildDate=<RFC 3339>"
//
// Left empty, currentBuild falls back to what the Go toolchain recorded.
var (
	version   string
	revision  string
	buildDate string
)

// buildInfo describes the running binary.
type buildInfo struct {
	Version   string // stamped, else the main module's version, else "devel[-<revision>[-dirty]]"
	Revision  string // the VCS commit; "" when unknown
	Date      string // when the binary was built (stamped only); "" when unknown
	GoVersion string // the Go toolchain that built it
	Platform  string // GOOS/GOARCH
}

// currentBuild describes this binary: the stamped values, completed from
// runtime/debug.ReadBuildInfo.
func currentBuild() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return describeBuild(buildInfo{Version: version, Revision: revision, Date: buildDate}, bi)
}

// describeBuild completes the stamped values with bi (nil when the binary
// carries no build information): the revision from vcs.revision, the version
// from the main module's version (a release, or a pseudo-version from the
// VCS), else "devel", followed by the first 12 digits of the revision and
// "-dirty" when the working tree had changes (vcs.modified).
func describeBuild(stamped buildInfo, bi *debug.BuildInfo) buildInfo {
	b := stamped
	b.GoVersion, b.Platform = runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH
	var vcsRevision string
	var modified bool
	if bi != nil {
		if bi.GoVersion != "" {
			b.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRevision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if b.Revision == "" {
		b.Revision = vcsRevision
	}
	if b.Version != "" {
		return b
	}
	switch {
	case bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)":
		b.Version = bi.Main.Version
	case vcsRevision != "":
		b.Version = "devel-" + vcsRevision[:min(12, len(vcsRevision))]
		if modified {
			b.Version += "-dirty"
		}
	default:
		b.Version = "devel"
	}
	return b
}

// String is what `sdevents version` prints: the version on the first line,
// then what else is known, one item a line.
func (b buildInfo) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "sdevents %s\n", b.Version)
	if b.Revision != "" {
		fmt.Fprintf(&s, "revision: %s\n", b.Revision)
	}
	if b.Date != "" {
		fmt.Fprintf(&s, "built:    %s\n", b.Date)
	}
	fmt.Fprintf(&s, "go:       %s %s\n", b.GoVersion, b.Platform)
	return s.String()
}

// newVersionCmd is `sdevents version`; the root's --version prints the same.
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, revision, build date and Go version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), currentBuild())
			return err
		},
	}
}

// announce writes a process's first log line — the binary's version, at info
// level whatever log.level filters out (only "disabled" silences it) — and
// registers the sdevents_build_info gauge on reg.
func announce(log zerolog.Logger, reg prometheus.Registerer) {
	b := currentBuild()
	ev := log.Log().Str(zerolog.LevelFieldName, zerolog.LevelInfoValue).Str("version", b.Version)
	if b.Revision != "" {
		ev = ev.Str("revision", b.Revision)
	}
	ev.Str("go", b.GoVersion).Msg("sdevents starting")
	reg.MustRegister(buildInfoGauge(b))
}

// buildInfoGauge is sdevents_build_info{version,revision,goversion} = 1, the
// usual way to expose a binary's version to Prometheus (join on it, or count
// the versions running). An unknown revision is "unknown".
func buildInfoGauge(b buildInfo) prometheus.Gauge {
	rev := b.Revision
	if rev == "" {
		rev = "unknown"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "sdevents_build_info",
		Help:        "The sdevents binary of this process: its version, VCS revision and Go version as labels; always 1.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": rev, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}
