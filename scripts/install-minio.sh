#!/usr/bin/env bash
# install-minio.sh builds the MinIO server used by the integration tests
# (pkg/miniotest) into <repo>/.tools/bin/minio.
#
# It is idempotent: when .tools/bin/minio exists and the stamp file
# .tools/bin/minio.version records the pinned version, nothing is done.
# The build takes several minutes; run it once (`make tools`).
#
# Override the version with MINIO_VERSION=... (the stamp then differs and
# the binary is rebuilt).
set -euo pipefail

MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bindir="$repo/.tools/bin"
bin="$bindir/minio"
stamp="$bindir/minio.version"

if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$MINIO_VERSION" ]]; then
	echo "minio $MINIO_VERSION already installed at $bin"
	exit 0
fi

mkdir -p "$bindir"
rm -f "$stamp"

echo "building minio $MINIO_VERSION into $bindir (this takes several minutes)"
# Build outside the workspace: go.work must not influence the tool's module graph.
(
	cd "$bindir"
	GOWORK=off GOFLAGS=-buildvcs=false GOBIN="$bindir" \
		go install "github.com/minio/minio@$MINIO_VERSION"
)

"$bin" --version >/dev/null 2>&1 || { echo "built $bin does not run" >&2; exit 1; }
printf '%s\n' "$MINIO_VERSION" > "$stamp"
echo "minio $MINIO_VERSION installed at $bin"
