#!/usr/bin/env bash
# Installs what a fresh machine with only the Rust toolchain lacks to build
# Phalanx: libclang (rocksdb's bindgen) and a C++ compiler (RocksDB itself).
#
#   scripts/ensure-deps.sh              install what is missing (apt-get, as root or with sudo)
#   scripts/ensure-deps.sh --check      only say what is missing; exit 1 if anything is
#
# libclang is found the way clang-sys (bindgen's loader) finds it: a file named
# libclang.so, libclang.so.N or libclang-N.so[.M] in LIBCLANG_PATH, in
# `llvm-config --libdir` or in the usual library folders. LLVM's
# libclang-cpp.so.N is a different library (the C++ API) and does not count:
# Debian's stock image ships it without libclang, and taking one for the other
# is how a fresh machine used to fail 40 s into the build.
#
# PHALANX_LIBCLANG_DIRS (colon-separated) replaces the folders searched; the
# tests use it to run the detection against fake library folders.
set -euo pipefail

# Is this file name one that clang-sys would load as libclang?
is_libclang_name() {
  case "$1" in
    libclang.so | libclang.so.[0-9]*) return 0 ;;
    libclang-[0-9]*.so | libclang-[0-9]*.so.[0-9]*)
      # libclang-14.so, libclang-14.0.6.so.1, ... : the part after "libclang-"
      # up to ".so" is a version made of digits and dots only.
      local version="${1#libclang-}"
      version="${version%%.so*}"
      [[ "$version" =~ ^[0-9]+(\.[0-9]+)*$ ]] && return 0
      return 1 ;;
    *) return 1 ;;
  esac
}

libclang_dirs() {
  if [ -n "${PHALANX_LIBCLANG_DIRS:-}" ]; then
    tr ':' '\n' <<<"$PHALANX_LIBCLANG_DIRS"
    return
  fi
  [ -n "${LIBCLANG_PATH:-}" ] && echo "$LIBCLANG_PATH"
  command -v llvm-config >/dev/null 2>&1 && llvm-config --libdir 2>/dev/null || true
  local d
  for d in /usr/lib/llvm-*/lib /usr/local/llvm*/lib /usr/lib /usr/lib64 /usr/local/lib \
    /usr/lib/*-linux-gnu /lib/*-linux-gnu; do
    [ -d "$d" ] && echo "$d"
  done
  return 0
}

# Prints the first libclang found and succeeds, or fails silently.
find_libclang() {
  local dir f
  while IFS= read -r dir; do
    [ -d "$dir" ] || continue
    for f in "$dir"/libclang*.so*; do
      [ -e "$f" ] || continue
      if is_libclang_name "$(basename "$f")"; then
        echo "$f"
        return 0
      fi
    done
  done < <(libclang_dirs)
  return 1
}

check_only=""
case "${1:-}" in
  --check) check_only=1 ;;
  -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "error: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

missing=()
if found=$(find_libclang); then
  [ -n "$check_only" ] && echo "libclang: $found"
else
  missing+=(libclang-dev)
fi
# PHALANX_LIBCLANG_DIRS means a test is asking about libclang alone.
if [ -z "${PHALANX_LIBCLANG_DIRS:-}" ]; then
  command -v c++ >/dev/null 2>&1 || missing+=(g++)
  command -v cargo >/dev/null 2>&1 || { echo "error: cargo not found; install Rust from https://rustup.rs first" >&2; exit 1; }
fi

if [ -n "$check_only" ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing: ${missing[*]}"
    exit 1
  fi
  echo "nothing to install"
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing build prerequisites: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: please install ${missing[*]} (libclang for rocksdb's bindgen, a C++ compiler for RocksDB) with your package manager" >&2
    exit 1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  found=$(find_libclang) || { echo "error: libclang still not found after installing ${missing[*]}; set LIBCLANG_PATH to the folder holding libclang.so" >&2; exit 1; }
  echo "==> libclang: $found"
fi
