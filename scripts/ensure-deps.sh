#!/usr/bin/env bash
# Installs what a fresh machine with only the Rust toolchain lacks to build
# Phalanx: libclang (rocksdb's bindgen) and a C++ compiler (RocksDB itself).
set -euo pipefail

have_libclang() {
  ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' && return 0
  compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null && return 0
  compgen -G '/usr/lib/x86_64-linux-gnu/libclang*.so*' >/dev/null && return 0
  return 1
}

missing=()
have_libclang || missing+=(libclang-dev clang)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v cargo >/dev/null 2>&1 || { echo "error: cargo not found; install Rust from https://rustup.rs first" >&2; exit 1; }

if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing build prerequisites: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: please install ${missing[*]} (libclang for rocksdb's bindgen) with your package manager" >&2
    exit 1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  have_libclang || { echo "error: libclang still not found after installing" >&2; exit 1; }
fi
