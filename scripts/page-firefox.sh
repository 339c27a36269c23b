#!/usr/bin/env bash
# The live page in Firefox, on demand (CI runs the Chromium test only):
# installs Debian's firefox-esr and puppeteer-core (scripts/firefox/, from
# the npm registry) where missing, starts a 4-node testnet with fault
# injection, drives a little load, and runs scripts/firefox/check.mjs:
# every validator up, the height rising, a validator paused with the
# page's button, no page errors, a screenshot.
#
#   scripts/page-firefox.sh [SCREENSHOT.png]
#
# Needs a built `phalanx` (PHALANX_BIN, default target/release/phalanx).
set -euo pipefail
cd "$(dirname "$0")/.."
shot="${1:-}"
[ -z "$shot" ] || shot=$(realpath -m "$shot")
bin="${PHALANX_BIN:-target/release/phalanx}"
[ -x "$bin" ] || { echo "no phalanx binary at $bin (cargo build --release, or set PHALANX_BIN)" >&2; exit 1; }
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v firefox-esr >/dev/null 2>&1; then
  echo "==> installing firefox-esr (Debian)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends firefox-esr >&2
fi
if [ ! -d scripts/firefox/node_modules/puppeteer-core ]; then
  echo "==> installing puppeteer-core (npm)" >&2
  (cd scripts/firefox && npm install --no-audit --no-fund --silent) >&2
fi
dir=$(mktemp -d /tmp/phalanx-firefox.XXXXXX)
base_port=${BASE_PORT:-28300}
load_pid=""
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
  PHALANX_BIN="$bin" testnet/local.sh down --dir "$dir/net" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
export PHALANX_BIN="$bin"
testnet/local.sh up --faults --dir "$dir/net" --base-port "$base_port" >"$dir/up.log" 2>&1 \
  || { cat "$dir/up.log" >&2; exit 1; }
"$bin" bench --testnet "$dir/net" --rate 50 --duration 120 --warmup 1 --out "$dir/bench" >/dev/null 2>&1 &
load_pid=$!
node scripts/firefox/check.mjs "http://127.0.0.1:$((base_port + 100))/" "$shot"
