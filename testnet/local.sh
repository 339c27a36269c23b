#!/usr/bin/env bash
# A local Phalanx testnet: N validator processes on loopback.
#
#   testnet/local.sh up [-n 4] [--dir DIR] [--base-port P]   build, init, start, wait for commits
#                                                             (restarts only stopped nodes if some run)
#   testnet/local.sh status [--dir DIR]                       pids, heights, views, peers
#   testnet/local.sh logs N [--dir DIR] [-f]                  one node's log
#   testnet/local.sh down [--dir DIR]                         stop the nodes this script started
#
# Node i listens for peers on P+i and serves its HTTP API on P+100+i
# (default P = 26000: node0's API is http://127.0.0.1:26100).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/testnet-data"
n=4
base_port=26000
follow=""
cmd="${1:-}"
[ $# -gt 0 ] && shift
node_arg=""

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    -n|--validators) n="${2:?-n needs a number}"; shift 2 ;;
    --dir) dir="${2:?--dir needs a path}"; shift 2 ;;
    --base-port) base_port="${2:?--base-port needs a port}"; shift 2 ;;
    -f|--follow) follow=1; shift ;;
    -h|--help) usage; exit 0 ;;
    [0-9]*) node_arg="$1"; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac

target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/release/phalanx"

build() {
  "$root/scripts/ensure-deps.sh"
  echo "==> building phalanx (release; the first build compiles RocksDB and takes a while)"
  (cd "$root" && cargo build --release --locked -p phalanx-node --bin phalanx)
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

count_homes() { ls -d "$dir"/node[0-9]* 2>/dev/null | wc -l; }

# Starts node $1 in the background, one log file and one pid file each.
start_node() {
  nohup "$bin" node --home "$dir/node$1" >>"$dir/logs/node$1.log" 2>&1 &
  echo $! > "$dir/pids/node$1.pid"
}

# Some nodes of the testnet were stopped (kill -9, a crash): start just those.
restart_stopped() {
  [ -x "$bin" ] || build
  [ -f "$dir/base_port" ] && base_port=$(cat "$dir/base_port")
  local i
  for i in $(seq 0 $(($(count_homes) - 1))); do
    pid_alive "$(node_pid "$i")" && continue
    echo "==> restarting node$i (it catches up from its peers)"
    start_node "$i"
  done
  echo "see \`testnet/local.sh status\`"
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
  if [ -d "$dir" ] && [ "$(count_homes)" -gt 0 ]; then
    fresh=""
    n=$(count_homes)
    [ -f "$dir/base_port" ] && base_port=$(cat "$dir/base_port")
  else
    [ "$n" -ge 4 ] || die "PBFT needs at least 4 validators (n ≥ 3f+1); got -n $n"
  fi
  # Check the ports before writing anything.
  for i in $(seq 0 $((n - 1))); do
    for port in $((base_port + i)) $((base_port + 100 + i)); do
      port_busy "$port" && die "port $port is already in use (another testnet? try --base-port or \`testnet/local.sh down\`)"
    done
  done
  if [ -n "$fresh" ]; then
    echo "==> writing $n node homes to $dir"
    "$bin" testnet init --validators "$n" --output "$dir" --base-port "$base_port" >/dev/null
    echo "$base_port" > "$dir/base_port"
  else
    echo "==> restarting the existing $n-node testnet in $dir (remove the folder for a fresh chain)"
  fi
  mkdir -p "$dir/pids" "$dir/logs"
  for i in $(seq 0 $((n - 1))); do start_node "$i"; done
  echo "==> started $n nodes (logs in $dir/logs); waiting for them to serve"
  for i in $(seq 0 $((n - 1))); do
    for _ in $(seq 1 100); do
      "$bin" query status --node "$(api "$i")" >/dev/null 2>&1 && break
      pid_alive "$(node_pid "$i")" || die "node$i exited; see $dir/logs/node$i.log"
      sleep 0.2
    done
  done
  echo "==> sending a first transfer and waiting for every node to commit it"
  local to
  to=$("$bin" keys show --key "$dir/accounts/account1.json" | awk '/[Aa]ddress/ {print $NF; exit}')
  "$bin" tx transfer --node "$(api 0)" --key "$dir/accounts/account0.json" --to "$to" --amount 1 --wait
  local want
  want=$("$bin" query status --node "$(api 0)" --json | sed -n 's/.*"height": *\([0-9]*\).*/\1/p')
  for i in $(seq 0 $((n - 1))); do
    for _ in $(seq 1 150); do
      h=$("$bin" query status --node "$(api "$i")" --json 2>/dev/null | sed -n 's/.*"height": *\([0-9]*\).*/\1/p')
      [ -n "$h" ] && [ "$h" -ge "${want:-1}" ] && break
      sleep 0.2
    done
  done
  echo
  echo "Phalanx testnet is up: $n validators committing blocks."
  for i in $(seq 0 $((n - 1))); do
    echo "  node$i  api $(api "$i")  p2p /ip4/127.0.0.1/tcp/$((base_port + i))  log $dir/logs/node$i.log"
  done
  echo
  echo "Send a transaction:"
  echo "  $bin tx transfer --node $(api 0) --key $dir/accounts/account0.json --to $to --amount 10 --wait"
  echo "Look at the chain:"
  echo "  $bin query status --node $(api 1)"
  echo "  curl -s $(api 2)/blocks/latest"
  echo "Stop it:  testnet/local.sh down"
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
  echo "stopped $stopped node(s); chain data kept in $dir (remove it for a fresh chain)"
}

case "$cmd" in
  up) up ;;
  status) status ;;
  logs) logs ;;
  down) down ;;
  -h|--help|help|"") usage ;;
  *) usage >&2; die "unknown command: $cmd" ;;
esac
