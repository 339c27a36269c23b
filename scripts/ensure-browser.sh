#!/usr/bin/env bash
# Installs the browser the live page's test drives: Debian's Chromium and
# its ChromeDriver (packages chromium and chromium-driver), when missing.
#
#   scripts/ensure-browser.sh           install what is missing (apt-get, as root or with sudo)
#   scripts/ensure-browser.sh --check   only say what is missing; exit 1 if anything is
#
# Prints the paths of chromium and chromedriver on its last line when both are there.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "${1:-}" = "--check" ]; then
    echo "missing: ${missing[*]} (scripts/ensure-browser.sh installs them)" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "error: ${missing[*]} missing, and installing them needs root or sudo" >&2
      exit 1
    }
    sudo="sudo"
  fi
  echo "==> installing ${missing[*]} (Debian packages, for the live page's browser test)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >&2
fi
for tool in chromium chromedriver; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool still missing" >&2; exit 1; }
done
echo "$(command -v chromium) $(command -v chromedriver)"
