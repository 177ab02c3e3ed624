#!/usr/bin/env bash
# Installs Debian's `prometheus` package (server + promtool) when /usr/bin/prometheus is missing.
# tests/test_monitoring.py and tests/test_deploy.py call this; they run a real Prometheus server with
# their own temporary config and storage on a loopback port, so the package's service is never used
# (and there is no systemd here to start it).
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
bash "$(dirname "$0")/install_debian.sh" prometheus prometheus promtool
# A package post-install may have started the service through an init script; tests use their own server.
if command -v service >/dev/null 2>&1; then
  service prometheus stop >/dev/null 2>&1 || true
fi
