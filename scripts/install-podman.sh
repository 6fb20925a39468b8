#!/usr/bin/env bash
# install-podman.sh installs the container engine of the offline test stack
# (scripts/test-stack.sh) from Debian's packages: Podman (4.3 on Debian 12)
# serves the Docker API that the docker CLI and Compose talk to; runc is the
# runtime it works with here; netavark and aardvark-dns give compose networks
# their service-name DNS. Nothing is done when all four are installed.
# Installing needs root (or sudo). The docker CLI itself is not installed:
# the stack only needs its client, which must be on PATH.
set -euo pipefail

missing=()
for cmd in podman runc; do
	command -v "$cmd" >/dev/null || missing+=("$cmd")
done
for f in /usr/lib/podman/netavark /usr/lib/podman/aardvark-dns; do
	[[ -x "$f" ]] || missing+=("$(basename "$f")")
done
if [[ ${#missing[@]} -eq 0 ]]; then
	exit 0
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
	command -v sudo >/dev/null || { echo "install-podman: run as root or install Debian's ${missing[*]}" >&2; exit 1; }
	sudo="sudo"
fi
echo "installing Debian's ${missing[*]} for the offline compose stack"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends podman runc netavark aardvark-dns >/dev/null
