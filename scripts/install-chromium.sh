#!/usr/bin/env bash
# install-chromium.sh installs Debian's chromium, which the console's
# end-to-end test drives headless (cmd/sdevents/console_test.go). Nothing is
# done when /usr/bin/chromium exists. Installing needs root (or sudo).
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
	exit 0
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
	command -v sudo >/dev/null || { echo "install-chromium: run as root or install Debian's chromium package" >&2; exit 1; }
	sudo="sudo"
fi
echo "installing Debian's chromium for the console's browser test"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
