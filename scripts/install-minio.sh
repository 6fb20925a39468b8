#!/usr/bin/env bash
# install-minio.sh builds the MinIO server used by the integration tests
# (pkg/miniotest) and by the offline compose stack (scripts/test-stack.sh,
# which copies it into a FROM-scratch image) into <repo>/.tools/bin/minio.
# The build is static (CGO_ENABLED=0), as MinIO's own releases are.
#
# It is idempotent: when .tools/bin/minio exists, is static and the stamp file
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

# static reports whether the binary was built with CGO_ENABLED=0 (a binary
# built before this script asked for it links libc and cannot run FROM scratch).
static() { go version -m "$1" 2>/dev/null | grep -q 'CGO_ENABLED=0'; }

if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$MINIO_VERSION" ]] && static "$bin"; then
	echo "minio $MINIO_VERSION already installed at $bin"
	exit 0
fi

mkdir -p "$bindir"
tmp="$(mktemp -d "$bindir/.minio-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "building minio $MINIO_VERSION into $bindir (this takes several minutes)"
# Build outside the workspace: go.work must not influence the tool's module
# graph. Into a temporary directory first, then renamed over the old binary,
# so that a MinIO a test is running keeps its file.
(
	cd "$tmp"
	CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false GOBIN="$tmp" \
		go install "github.com/minio/minio@$MINIO_VERSION"
)

"$tmp/minio" --version >/dev/null 2>&1 || { echo "built minio does not run" >&2; exit 1; }
static "$tmp/minio" || { echo "built minio is not static" >&2; exit 1; }
mv -f "$tmp/minio" "$bin"
printf '%s\n' "$MINIO_VERSION" > "$stamp"
echo "minio $MINIO_VERSION installed at $bin"
