#!/usr/bin/env bash
# install_debian.sh PACKAGE COMMAND...: installs Debian's PACKAGE when one of the COMMANDs is missing.
# The tests that run a real external program install it this way: prometheus (infra/install_prometheus.sh)
# and chromium (infra/browser.py, the headless browser of tests/test_user_page.py).
set -euo pipefail

package="$1"; shift
missing=0
for cmd in "$@"; do
  command -v "$cmd" >/dev/null 2>&1 || missing=1
done
[ "$missing" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install_debian.sh: $* missing and installing it needs root (apt-get install $package)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# --no-install-recommends: the program itself, not its optional companions
apt-get install -y -q --no-install-recommends "$package"
for cmd in "$@"; do
  command -v "$cmd" >/dev/null
done
