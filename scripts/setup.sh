#!/usr/bin/env bash
# Shared set-up for the demo, the tests and the benchmark: installs the
# Debian packages named as arguments when their command is missing, then
# the npm dependencies (only when package-lock.json changed), then builds.
# Usage: scripts/setup.sh [command:package ...]
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in "$@"; do
  cmd=${pair%%:*}
  pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]} (apt-get)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

stamp=node_modules/.vdsnap-lock-hash
want=$(sha256sum package-lock.json | cut -c1-64)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
  echo "$want" > "$stamp"
fi
# The hole-map helper is built by npm's install step; build it again if it is missing.
[ -f build/Release/vdsnap_seek.node ] || npm run --silent install >&2 || true
echo "setup: build" >&2
npm run --silent build >&2
