#!/usr/bin/env bash
# install-compose.sh builds the Docker Compose CLI plugin pinned in
# scripts/compose-plugin/go.mod into <repo>/.tools/docker/cli-plugins/, where
# the docker CLI finds it with DOCKER_CONFIG=<repo>/.tools/docker (what
# scripts/test-stack.sh sets), so nothing outside the repository changes.
#
# `go install github.com/docker/compose/v5/cmd@version` is refused (Compose's
# go.mod has exclude directives); the small module in scripts/compose-plugin
# requires Compose and builds its command instead, from the Go module proxy.
#
# It is idempotent: when the plugin exists and its stamp file records the
# pinned version, nothing is done. The first build takes a few minutes.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$repo/scripts/compose-plugin"
dir="$repo/.tools/docker/cli-plugins"
bin="$dir/docker-compose"
stamp="$dir/docker-compose.version"

version="$(awk '$1 == "github.com/docker/compose/v5" { print $2 }' "$mod/go.mod")"
[[ -n "$version" ]] || { echo "install-compose: no github.com/docker/compose/v5 requirement in $mod/go.mod" >&2; exit 1; }

if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
	echo "docker compose $version already installed at $bin"
	exit 0
fi

mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.compose-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "building docker compose $version into $dir"
(
	cd "$mod"
	CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false \
		go build -trimpath -ldflags "-w -X github.com/docker/compose/v5/internal.Version=$version" \
		-o "$tmp/docker-compose" github.com/docker/compose/v5/cmd
)
"$tmp/docker-compose" version >/dev/null || { echo "built docker-compose does not run" >&2; exit 1; }
mv -f "$tmp/docker-compose" "$bin"
printf '%s\n' "$version" > "$stamp"
echo "docker compose $version installed at $bin"
