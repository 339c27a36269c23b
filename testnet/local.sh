#!/usr/bin/env bash
# A local Phalanx testnet: N validator processes on loopback.
#
#   testnet/local.sh up [-n 4] [--faults] [--consensus pbft|cft|pow|pos] [--fallback pow|pos] [--json] [--dir DIR] [--base-port P]
#         build, init, start, wait until every node answers and a first transfer commits;
#         prints the endpoints and the prefunded accounts (--json: the same as JSON).
#         On an existing chain it resumes it; if some nodes run, it restarts only the
#         stopped ones, with the flags they were first started with.
#         --faults: allow fault injection (/admin routes, `phalanx node --allow-fault-injection`).
#         --fallback pow|pos: PBFT falls back to proof of work or stake without a quorum
#         (stop 2 of 4 nodes: transfers still land, tentative; restart them: they turn final).
#   testnet/local.sh accounts [--json] [--dir DIR]            the prefunded accounts again
#   testnet/local.sh status [--dir DIR]                       pids, heights, views, peers
#   testnet/local.sh logs N [--dir DIR] [-f]                  one node's log
#   testnet/local.sh down [--dir DIR]                         stop the nodes this script started
#   testnet/local.sh reset [--dir DIR]                        delete the chain (refused while nodes run)
#
# Node i listens for peers on P+i and serves its HTTP API on P+100+i
# (default P = 26000: node0's API is http://127.0.0.1:26100, the CLI's default).
# Environment: PHALANX_LOG=phalanx=debug (node log filter), PHALANX_BIN (use
# this phalanx binary instead of building one), CARGO_TARGET_DIR.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/testnet-data"
n=4
base_port=26000
follow=""
json=""
faults=""
consensus=""
fallback=""
cmd="${1:-}"
[ $# -gt 0 ] && shift
node_arg=""

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 1; }
# Progress lines: on stdout for people, on stderr when stdout is JSON.
say() { if [ -n "$json" ]; then echo "$@" >&2; else echo "$@"; fi; }

while [ $# -gt 0 ]; do
  case "$1" in
    -n|--validators) n="${2:?-n needs a number}"; shift 2 ;;
    --dir) dir="${2:?--dir needs a path}"; shift 2 ;;
    --base-port) base_port="${2:?--base-port needs a port}"; shift 2 ;;
    --consensus) consensus="${2:?--consensus needs pbft, cft, pow or pos}"; shift 2 ;;
    --fallback) fallback="${2:?--fallback needs pow, pos or none}"; shift 2 ;;
    --faults) faults=1; shift ;;
    --json) json=1; shift ;;
    -f|--follow) follow=1; shift ;;
    -h|--help) usage; exit 0 ;;
    [0-9]*) node_arg="$1"; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
case "$n" in ''|*[!0-9]*) die "-n needs a number of validators, got '$n'" ;; esac
case "$consensus" in ''|pbft|cft|pow|pos|pbft+pow|pbft+pos) ;; *) die "--consensus must be pbft, cft, pow or pos, got '$consensus'" ;; esac
case "$fallback" in ''|none|pow|pos) ;; *) die "--fallback must be pow, pos or none, got '$fallback'" ;; esac
case "$fallback" in pow|pos) case "${consensus:-pbft}" in pbft) ;; *) die "--fallback needs PBFT (--consensus pbft), got --consensus $consensus" ;; esac ;; esac

target="${CARGO_TARGET_DIR:-$root/target}"
bin="${PHALANX_BIN:-$target/release/phalanx}"

build() {
  if [ -n "${PHALANX_BIN:-}" ]; then
    [ -x "$bin" ] || die "PHALANX_BIN=$bin is not an executable"
    return 0
  fi
  "$root/scripts/ensure-deps.sh" >&2
  say "==> building phalanx (release; the first build compiles RocksDB and takes a while)"
  (cd "$root" && cargo build --release --locked -p phalanx --bin phalanx) >&2
}

# Alive and not a zombie (a killed node whose parent has not reaped it yet).
pid_alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != "Z" ]
}

node_pid() { cat "$dir/pids/node$1.pid" 2>/dev/null || true; }

running_nodes() {
  local count=0 f pid
  for f in "$dir"/pids/node*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if pid_alive "$pid"; then count=$((count + 1)); fi
  done
  echo "$count"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

api() { echo "http://127.0.0.1:$((base_port + 100 + $1))"; }

# A number field of `phalanx query status --json`.
field() { echo "$2" | sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p" | head -n 1; }

# Homes node0, node1, ... in a row (a twin's home such as node0-twin is not one).
count_homes() {
  local i=0
  while [ -d "$dir/node$i" ]; do i=$((i + 1)); done
  echo "$i"
}

# The flags node $1 runs with: recorded when it is first started, so that a
# node restarted by `up` after kill -9 comes back as it was.
node_flags() { cat "$dir/flags/node$1" 2>/dev/null || true; }

record_flags() {
  mkdir -p "$dir/flags"
  if [ -n "$faults" ]; then echo "--allow-fault-injection" > "$dir/flags/node$1"; else : > "$dir/flags/node$1"; fi
}

# Starts node $1 in the background, one log file and one pid file each.
start_node() {
  local flags
  flags=$(node_flags "$1")
  # shellcheck disable=SC2086 # the recorded flags are words
  nohup "$bin" node --home "$dir/node$1" $flags >>"$dir/logs/node$1.log" 2>&1 &
  echo $! > "$dir/pids/node$1.pid"
}

# Waits until node $1 answers its API (up to 30 s); fails if it exits.
wait_serving() {
  local _
  for _ in $(seq 1 150); do
    "$bin" query status --node "$(api "$1")" >/dev/null 2>&1 && return 0
    pid_alive "$(node_pid "$1")" || die "node$1 exited; see $dir/logs/node$1.log"
    sleep 0.2
  done
  die "node$1 does not answer on $(api "$1") after 30 s; see $dir/logs/node$1.log"
}

# Some nodes of the testnet were stopped (kill -9, a crash): start just those,
# with the flags they had, and return once they answer.
restart_stopped() {
  [ -x "$bin" ] || build
  [ -f "$dir/base_port" ] && base_port=$(cat "$dir/base_port")
  local i restarted=()
  for i in $(seq 0 $(($(count_homes) - 1))); do
    pid_alive "$(node_pid "$i")" && continue
    [ -f "$dir/flags/node$i" ] || record_flags "$i"
    local flags
    flags=$(node_flags "$i")
    say "==> restarting node$i${flags:+ $flags} (it catches up from its peers)"
    start_node "$i"
    restarted+=("$i")
  done
  for i in "${restarted[@]}"; do wait_serving "$i"; done
  say "==> restarted node(s) ${restarted[*]}: answering; see \`testnet/local.sh status\`"
  if [ -n "$json" ]; then summary_json; fi
}

# The ready-to-paste part of the keys options: names resolve by themselves
# from ./testnet-data/accounts, so the flag is only needed for another --dir.
keys_opt() {
  if [ "$dir" = "$PWD/testnet-data" ]; then echo ""; else echo " --keys-dir $dir/accounts"; fi
}

accounts_table() {
  "$bin" keys list "$dir/accounts" --genesis "$dir/genesis.json" | sed 's/^/  /'
}

# The testnet as JSON: nodes (api, p2p, pid, log, flags) and accounts.
summary_json() {
  local i first=1 accounts
  accounts=$("$bin" keys list "$dir/accounts" --genesis "$dir/genesis.json" --json)
  printf '{\n  "dir": "%s",\n  "binary": "%s",\n  "page": "%s/",\n  "nodes": [' "$dir" "$bin" "$(api 0)"
  for i in $(seq 0 $(($(count_homes) - 1))); do
    [ -n "$first" ] || printf ','
    first=""
    printf '\n    {"name": "node%s", "api": "%s", "p2p": "/ip4/127.0.0.1/tcp/%s", "pid": %s, "log": "%s", "flags": "%s"}' \
      "$i" "$(api "$i")" "$((base_port + i))" "$(node_pid "$i" | grep . || echo null)" "$dir/logs/node$i.log" "$(node_flags "$i")"
  done
  printf '\n  ],\n  "accounts": %s\n}\n' "$accounts"
}

up() {
  local running
  running=$(running_nodes)
  if [ "$running" -gt 0 ]; then
    [ "$running" -lt "$(count_homes)" ] || die "a testnet is already running from $dir (see \`testnet/local.sh status\`; stop it with \`testnet/local.sh down\`)"
    restart_stopped
    return 0
  fi
  build
  local fresh=1
  if [ "$(count_homes)" -gt 0 ]; then
    fresh=""
    n=$(count_homes)
    [ -f "$dir/base_port" ] && base_port=$(cat "$dir/base_port")
    [ -z "$consensus$fallback" ] || say "note: --consensus and --fallback apply to a new chain; this one keeps its genesis"
  else
    case "${consensus:-pbft}" in
      pbft|pbft+pow|pbft+pos) [ "$n" -ge 4 ] || die "PBFT needs at least 4 validators (n ≥ 3f+1); got -n $n" ;;
      cft|pow|pos) [ "$n" -ge 1 ] || die "${consensus^^} needs at least 1 validator; got -n $n" ;;
    esac
  fi
  # Check the ports before writing anything.
  for i in $(seq 0 $((n - 1))); do
    for port in $((base_port + i)) $((base_port + 100 + i)); do
      port_busy "$port" && die "port $port is already in use (another testnet? try --base-port or \`testnet/local.sh down\`)"
    done
  done
  if [ -n "$fresh" ]; then
    say "==> writing $n node homes to $dir"
    "$bin" testnet init --validators "$n" --consensus "${consensus:-pbft}" --fallback "${fallback:-none}" --output "$dir" --base-port "$base_port" >/dev/null
    echo "$base_port" > "$dir/base_port"
  else
    say "==> resuming the existing $n-node chain in $dir (\`testnet/local.sh reset\` for a fresh one)"
  fi
  mkdir -p "$dir/pids" "$dir/logs"
  for i in $(seq 0 $((n - 1))); do
    # A fresh start takes this run's flags; so does a resumed chain (every node is stopped).
    record_flags "$i"
    start_node "$i"
  done
  say "==> started $n nodes${faults:+ with fault injection allowed} (logs in $dir/logs); waiting for them to answer"
  for i in $(seq 0 $((n - 1))); do wait_serving "$i"; done
  say "==> sending a first transfer and waiting for every node to commit it"
  "$bin" tx transfer --node "$(api 0)" --keys-dir "$dir/accounts" --key account0 --to account1 \
    --amount 1 --wait --timeout 60 >&2 \
    || die "the first transfer did not commit; see $dir/logs/ and \`testnet/local.sh status\`"
  local want h
  want=$(field height "$("$bin" query status --node "$(api 0)" --json)")
  for i in $(seq 0 $((n - 1))); do
    for _ in $(seq 1 150); do
      h=$(field height "$("$bin" query status --node "$(api "$i")" --json 2>/dev/null || true)")
      [ -n "$h" ] && [ "$h" -ge "${want:-1}" ] && break
      sleep 0.2
    done
  done
  if [ -n "$json" ]; then
    summary_json
    return 0
  fi
  echo
  echo "Phalanx testnet is up: $n validators committing blocks${faults:+, fault injection allowed}."
  for i in $(seq 0 $((n - 1))); do
    echo "  node$i  api $(api "$i")  p2p /ip4/127.0.0.1/tcp/$((base_port + i))  log $dir/logs/node$i.log"
  done
  echo
  echo "Watch it work (any node's API port serves the live page):"
  echo "  $(api 0)/"
  echo
  echo "Prefunded accounts (use the name wherever a key file or address is asked for):"
  accounts_table
  echo
  echo "Send a transaction:"
  echo "  $bin tx transfer --key account0 --to account1 --amount 10 --wait$(keys_opt)"
  echo "Look at the chain:"
  echo "  $bin query account account1$(keys_opt) --node $(api 1)"
  echo "  curl -s $(api 2)/blocks/latest"
  if [ -n "$faults" ]; then
    echo "Break a node on purpose:"
    echo "  curl -s -X POST $(api 1 | sed 's#http://##')/admin/behaviour -H 'content-type: application/json' -d '{\"behaviour\":\"silent\"}'"
  fi
  echo "Stop it:  testnet/local.sh down    (a fresh chain: testnet/local.sh reset)"
}

accounts() {
  [ -f "$dir/genesis.json" ] || die "no testnet in $dir (start one with \`testnet/local.sh up\`)"
  [ -x "$bin" ] || die "no phalanx binary at $bin (run \`testnet/local.sh up\` first)"
  if [ -n "$json" ]; then
    "$bin" keys list "$dir/accounts" --genesis "$dir/genesis.json" --json
  else
    accounts_table
  fi
}

reset() {
  [ -e "$dir" ] || { echo "nothing to reset: $dir does not exist"; return 0; }
  [ "$(running_nodes)" -eq 0 ] || die "nodes are running from $dir; stop them first with \`testnet/local.sh down\`"
  # Only ever delete a folder this script made.
  [ -f "$dir/genesis.json" ] && [ -f "$dir/base_port" ] \
    || die "$dir does not look like a testnet made by testnet/local.sh (no genesis.json and base_port); not deleting it"
  rm -rf "$dir"
  echo "deleted the chain in $dir; \`testnet/local.sh up\` starts a fresh one"
}

status() {
  [ -d "$dir/pids" ] || die "no testnet in $dir (start one with \`testnet/local.sh up\`)"
  [ -f "$dir/base_port" ] && base_port=$(cat "$dir/base_port")
  local i=0 f pid state
  for f in "$dir"/pids/node*.pid; do
    [ -e "$f" ] || continue
    i=$(basename "$f" .pid); i=${i#node}
    pid=$(cat "$f")
    if pid_alive "$pid"; then state="running (pid $pid)"; else state="stopped"; fi
    printf 'node%s  %-22s ' "$i" "$state"
    if pid_alive "$pid" && [ -x "$bin" ]; then
      local json
      if json=$("$bin" query status --node "$(api "$i")" --json 2>/dev/null); then
        printf 'height %s  view %s  primary %s  peers %s  mempool %s  api %s' \
          "$(field height "$json")" "$(field view "$json")" "$(field primary "$json")" \
          "$(echo "$json" | tr -d ' \n' | sed -n 's/.*"peers":\[\([0-9,]*\)\].*/\1/p' | tr ',' '\n' | grep -c . || true)" \
          "$(field mempool_size "$json")" "$(api "$i")"
      else
        printf 'not answering on %s' "$(api "$i")"
      fi
    fi
    echo
  done
}

logs() {
  [ -n "$node_arg" ] || die "which node? e.g. \`testnet/local.sh logs 0\`"
  local f="$dir/logs/node$node_arg.log"
  [ -f "$f" ] || die "no log $f"
  if [ -n "$follow" ]; then tail -f "$f"; else tail -n 200 "$f"; fi
}

down() {
  [ -d "$dir/pids" ] || { echo "no testnet running from $dir"; return 0; }
  local f pid stopped=0
  for f in "$dir"/pids/node*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    # Only stop processes this script started: the pid must still be a phalanx node of this dir.
    if pid_alive "$pid" && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "phalanx node --home $dir/"; then
      kill -TERM "$pid" && stopped=$((stopped + 1))
    fi
  done
  for f in "$dir"/pids/node*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  echo "stopped $stopped node(s); chain data kept in $dir (\`testnet/local.sh reset\` for a fresh chain)"
}

case "$cmd" in
  up) up ;;
  accounts) accounts ;;
  reset) reset ;;
  status) status ;;
  logs) logs ;;
  down) down ;;
  -h|--help|help|"") usage ;;
  *) usage >&2; die "unknown command: $cmd" ;;
esac
