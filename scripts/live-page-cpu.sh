#!/usr/bin/env bash
# What watching costs the nodes: `phalanx bench` on a fresh local 4-node
# testnet, run after run, with
#   without   nobody watching,
#   streams   one raw reader of every node's /events (what the page
#             receives, without a browser's CPU on the same machine),
#   page      the live page open in headless Chromium (which reads all four
#             streams and animates);
# and each node's CPU use (utime + stime from /proc over the bench run, in
# percent of one core), the committed tx/s, and the browser's own CPU.
#
#   scripts/live-page-cpu.sh [--rate 1000] [--duration 30] [--rounds 2]
#
# Needs a built `phalanx` (PHALANX_BIN, default target/release/phalanx) and
# Chromium (scripts/ensure-browser.sh installs it). Uses its own directory
# and ports (BASE_PORT, default 28500); stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=1000 duration=30 rounds=2
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
bin="${PHALANX_BIN:-target/release/phalanx}"
[ -x "$bin" ] || { echo "no phalanx binary at $bin (cargo build --release, or set PHALANX_BIN)" >&2; exit 1; }
read -r chromium _ < <(scripts/ensure-browser.sh | tail -1)
dir=$(mktemp -d /tmp/phalanx-page-cpu.XXXXXX)
base_port=${BASE_PORT:-28500}
api0="http://127.0.0.1:$((base_port + 100))"
watchers=()
export PHALANX_BIN="$bin"

stop_watchers() {
  local p
  for p in "${watchers[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${watchers[@]}"; do wait "$p" 2>/dev/null || true; done
  watchers=()
}
cleanup() {
  stop_watchers
  testnet/local.sh down --dir "$dir/net" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tree_ticks() { # CPU ticks of the given pids and all their descendants
  local total=0 p kids
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(cpu_ticks "$p")))
    kids=$(pgrep -P "$p" || true)
    # shellcheck disable=SC2086
    [ -n "$kids" ] && total=$((total + $(tree_ticks $kids)))
  done
  echo "$total"
}

run() { # $1: mode; prints "mode cpu0 cpu1 cpu2 cpu3 committed watcher-cpu"
  local mode=$1 pids=() before=() after=() i t0 t1 committed w0 w1
  testnet/local.sh down --dir "$dir/net" >/dev/null 2>&1 || true
  rm -rf "$dir/net"
  testnet/local.sh up --dir "$dir/net" --base-port "$base_port" >"$dir/up.log" 2>&1 \
    || { cat "$dir/up.log" >&2; exit 1; }
  for i in 0 1 2 3; do pids+=("$(cat "$dir/net/pids/node$i.pid")"); done
  case "$mode" in
    streams)
      for i in 0 1 2 3; do
        curl -sN "http://127.0.0.1:$((base_port + 100 + i))/events" >/dev/null &
        watchers+=($!)
      done ;;
    page)
      "$chromium" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --window-size=1400,900 "$api0/" >/dev/null 2>&1 &
      watchers+=($!) ;;
  esac
  sleep 3
  for i in 0 1 2 3; do before[i]=$(cpu_ticks "${pids[i]}"); done
  w0=$(tree_ticks "${watchers[@]}")
  t0=$(date +%s.%N)
  "$bin" bench --testnet "$dir/net" --rate "$rate" --duration "$duration" --warmup 2 \
    --out "$dir/bench" >"$dir/bench.log" 2>&1 || { cat "$dir/bench.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  for i in 0 1 2 3; do after[i]=$(cpu_ticks "${pids[i]}"); done
  w1=$(tree_ticks "${watchers[@]}")
  stop_watchers
  committed=$(grep -o '"committed_tps": *[0-9.]*' "$dir/bench/bench.json" | head -1 | awk -F: '{printf "%.0f", $2}')
  printf '%s' "$mode"
  for i in 0 1 2 3; do
    awk -v a="${before[i]}" -v b="${after[i]}" -v t0="$t0" -v t1="$t1" -v hz="$ticks" \
      'BEGIN { printf " %.1f", 100 * (b - a) / hz / (t1 - t0) }'
  done
  printf ' %s' "${committed:-?}"
  awk -v a="$w0" -v b="$w1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" \
    'BEGIN { printf " %.1f\n", 100 * (b - a) / hz / (t1 - t0) }'
}

echo "phalanx bench --rate $rate --duration $duration, 4 local nodes, $(nproc) cores, $rounds rounds"
echo "CPU in % of one core over the bench run (a fresh testnet each run)"
printf '%-8s %6s %6s %6s %6s %10s %8s\n' "" node0 node1 node2 node3 "tx/s" watcher
results=()
for _ in $(seq 1 "$rounds"); do
  for mode in without streams page; do
    line=$(run "$mode")
    results+=("$line")
    # shellcheck disable=SC2086
    printf '%-8s %6s %6s %6s %6s %10s %8s\n' $line
  done
done
printf '%s\n' "${results[@]}" | awk '
  { for (i = 2; i <= 7; i++) sum[$1, i] += $i; n[$1]++ }
  END {
    for (m in n) for (i = 2; i <= 7; i++) mean[m, i] = sum[m, i] / n[m]
    for (i = 2; i <= 5; i++) { base += mean["without", i]; s += mean["streams", i]; p += mean["page", i] }
    printf "mean node CPU: %.1f%% without, %.1f%% with the streams read (%+.1f points), %.1f%% with the page open (%+.1f points)\n",
      base / 4, s / 4, (s - base) / 4, p / 4, (p - base) / 4
    printf "committed tx/s: %.0f without, %.0f with the streams, %.0f with the page; the browser itself: %.1f%% of a core\n",
      mean["without", 6], mean["streams", 6], mean["page", 6], mean["page", 7]
  }'
