#!/usr/bin/env bash
# A Phalanx testnet of N validators on one Linux machine, each in its own
# network namespace with its own IP address: the network of N machines, and
# partitions that cut a node's link instead of asking the node to play along.
# Needs root and `ip netns` (iproute2).
#
#   testnet/netns.sh up [-n 4] [--dir DIR]    bridge, namespaces, homes; start the nodes and
#                                             wait for a first transfer to commit (restarts
#                                             only stopped nodes if some run)
#   testnet/netns.sh status [--dir DIR]       pid, link, height, view, primary, peers per node
#   testnet/netns.sh partition I [J ...]      cut node I's link (its veth goes down): the
#                                             node runs on but reaches nobody
#   testnet/netns.sh heal                     bring every node's link back up
#   testnet/netns.sh logs I [-f]              one node's log
#   testnet/netns.sh down [--dir DIR]         stop the nodes; remove namespaces, veths and the
#                                             bridge (safe to repeat, also after a crash)
#
# Node i runs in namespace phx-node<i> with address 10.77.0.<i+1>/24 on a
# veth whose other end (phx-veth<i>) is on the bridge phx-br0 (10.77.0.254/24,
# so the CLI in the root namespace reaches every node). Each node listens for
# peers on its own address, port 26000, and serves its API there on port
# 26100 (`phalanx testnet init --hosts 10.77.0.1,...`):
#   phalanx query status --node http://10.77.0.2:26100
# Data, logs and pid files go to DIR (default: testnet-netns/ in the repository).
#
# Environment: PHALANX_BIN (the phalanx binary; default: build
# $CARGO_TARGET_DIR/release/phalanx), PHX_NETNS_PREFIX (names: default phx;
# at most 8 letters or digits), PHX_NETNS_SUBNET (the /24: default 10.77.0).
# A testnet remembers its prefix and subnet in DIR/netns.env.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/testnet-netns"
n=4
follow=""
cmd="${1:-}"
[ $# -gt 0 ] && shift
node_args=()

# The header comment above is the help.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    -n|--validators) n="${2:?-n needs a number}"; shift 2 ;;
    --dir) dir="${2:?--dir needs a path}"; shift 2 ;;
    -f|--follow) follow=1; shift ;;
    -h|--help) usage; exit 0 ;;
    [0-9]*) node_args+=("$1"); shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac

prefix="${PHX_NETNS_PREFIX:-phx}"
subnet="${PHX_NETNS_SUBNET:-10.77.0}"
# A testnet keeps the names and addresses it was made with.
if [ -f "$dir/netns.env" ]; then
  # shellcheck source=/dev/null
  . "$dir/netns.env"
fi
[[ "$prefix" =~ ^[a-z0-9]{1,8}$ ]] || die "PHX_NETNS_PREFIX must be 1 to 8 lowercase letters or digits (it names interfaces), got '$prefix'"
[[ "$subnet" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "PHX_NETNS_SUBNET must be the first three numbers of a /24, like 10.77.0; got '$subnet'"
bridge="$prefix-br0"
bridge_ip="$subnet.254"
P2P_PORT=26000
API_PORT=26100

ns() { echo "$prefix-node$1"; }
veth() { echo "$prefix-veth$1"; }
ip_of() { echo "$subnet.$(($1 + 1))"; }
api() { echo "http://$(ip_of "$1"):$API_PORT"; }

if [ -n "${PHALANX_BIN:-}" ]; then
  bin="$PHALANX_BIN"
else
  bin="${CARGO_TARGET_DIR:-$root/target}/release/phalanx"
fi

need_root() {
  [ "$(id -u)" -eq 0 ] || die "netns.sh needs root: it creates network namespaces, veths and a bridge (try sudo)"
  command -v ip >/dev/null || die "the ip command (iproute2) is missing"
  ip netns list >/dev/null 2>&1 || die "\`ip netns\` does not work here (no network namespace support?)"
}

build() {
  if [ -n "${PHALANX_BIN:-}" ]; then
    [ -x "$bin" ] || die "PHALANX_BIN=$bin is not an executable"
    return 0
  fi
  "$root/scripts/ensure-deps.sh"
  echo "==> building phalanx (release; the first build compiles RocksDB and takes a while)"
  (cd "$root" && cargo build --release --locked -p phalanx --bin phalanx)
}

pid_alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != "Z" ]
}

node_pid() { cat "$dir/pids/node$1.pid" 2>/dev/null || true; }

# A phalanx node of this testnet (so that down never stops anything else).
ours() {
  pid_alive "$1" && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -qF " node --home $dir/node"
}

count_homes() { { ls -d "$dir"/node[0-9]* 2>/dev/null || true; } | wc -l; }

field() { echo "$2" | sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p" | head -n 1; }

peer_count() {
  echo "$1" | tr -d ' \n' | sed -n 's/.*"peers":\[\([0-9,]*\)\].*/\1/p' | tr ',' '\n' | grep -c . || true
}

# Asked from inside the node's namespace, so that a cut node still answers.
status_json() { ip netns exec "$(ns "$1")" "$bin" query status --node "$(api "$1")" --json 2>/dev/null; }

link_state() {
  if ! ip link show "$(veth "$1")" >/dev/null 2>&1; then echo "none"
  elif ip -o link show "$(veth "$1")" | grep -Eq '[<,]UP[,>]'; then echo "up"
  else echo "cut"
  fi
}

our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix-node[0-9]*$" || true; }
our_veths() {
  ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^$prefix-veth[0-9]*$" || true
}

# The bridge, and for node i a namespace with a veth into the bridge.
make_network() {
  local count="$1" i
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "$bridge_ip/24" dev "$bridge"
    ip link set "$bridge" up
  fi
  for i in $(seq 0 $((count - 1))); do
    our_namespaces | grep -qx "$(ns "$i")" || ip netns add "$(ns "$i")"
    ip -n "$(ns "$i")" link set lo up
    if ! ip link show "$(veth "$i")" >/dev/null 2>&1; then
      ip link add "$(veth "$i")" type veth peer name "$prefix-tmp$i"
      ip link set "$prefix-tmp$i" netns "$(ns "$i")"
      ip -n "$(ns "$i")" link set "$prefix-tmp$i" name eth0
      ip -n "$(ns "$i")" addr add "$(ip_of "$i")/24" dev eth0
      ip -n "$(ns "$i")" link set eth0 up
      ip link set "$(veth "$i")" master "$bridge"
    fi
    ip link set "$(veth "$i")" up
  done
}

start_node() {
  nohup ip netns exec "$(ns "$1")" "$bin" node --home "$dir/node$1" >>"$dir/logs/node$1.log" 2>&1 &
  echo $! > "$dir/pids/node$1.pid"
}

running_nodes() {
  local count=0 f
  for f in "$dir"/pids/node*.pid; do
    [ -e "$f" ] || continue
    if ours "$(cat "$f")"; then count=$((count + 1)); fi
  done
  echo "$count"
}

wait_serving() {
  local i
  for i in $(seq 0 $(($1 - 1))); do
    for _ in $(seq 1 150); do
      "$bin" query status --node "$(api "$i")" >/dev/null 2>&1 && continue 2
      pid_alive "$(node_pid "$i")" || die "node$i exited; see $dir/logs/node$i.log"
      sleep 0.2
    done
    die "node$i does not answer on $(api "$i") after 30 s; see $dir/logs/node$i.log"
  done
}

up() {
  need_root
  local count running i fresh=1
  running=$(running_nodes)
  count=$(count_homes)
  if [ "$running" -gt 0 ]; then
    [ "$running" -lt "$count" ] || die "a netns testnet is already running from $dir (see \`testnet/netns.sh status\`; stop it with \`testnet/netns.sh down\`)"
    [ -x "$bin" ] || build
    make_network "$count"
    for i in $(seq 0 $((count - 1))); do
      ours "$(node_pid "$i")" && continue
      echo "==> restarting node$i in $(ns "$i") (it catches up from its peers)"
      start_node "$i"
    done
    echo "see \`testnet/netns.sh status\`"
    return 0
  fi
  if [ "$count" -gt 0 ]; then
    fresh=""
    n=$count
  else
    [ "$n" -ge 4 ] || die "PBFT needs at least 4 validators (n ≥ 3f+1); got -n $n"
    [ "$n" -le 100 ] || die "at most 100 validators; got -n $n"
    ip link show "$bridge" >/dev/null 2>&1 && die "bridge $bridge already exists (another netns testnet, or a crashed one: \`testnet/netns.sh down\` removes it; or set PHX_NETNS_PREFIX and PHX_NETNS_SUBNET)"
    if ip -o -4 addr show | grep -qF " inet $subnet."; then
      die "the subnet $subnet.0/24 is already in use on this machine; pick another with PHX_NETNS_SUBNET"
    fi
  fi
  build
  if [ -n "$fresh" ]; then
    echo "==> writing $n node homes to $dir (hosts $(ip_of 0) to $(ip_of $((n - 1))))"
    local hosts
    hosts=$(for i in $(seq 0 $((n - 1))); do ip_of "$i"; done | paste -sd, -)
    "$bin" testnet init --validators "$n" --output "$dir" --hosts "$hosts" >/dev/null
    printf 'prefix=%s\nsubnet=%s\n' "$prefix" "$subnet" > "$dir/netns.env"
  else
    echo "==> restarting the existing $n-node testnet in $dir (remove the folder for a fresh chain)"
  fi
  echo "==> creating bridge $bridge ($bridge_ip/24) and namespaces $(ns 0) to $(ns $((n - 1)))"
  make_network "$n"
  mkdir -p "$dir/pids" "$dir/logs"
  for i in $(seq 0 $((n - 1))); do start_node "$i"; done
  echo "==> started $n nodes (logs in $dir/logs); waiting for them to serve"
  wait_serving "$n"
  echo "==> sending a first transfer and waiting for every node to commit it"
  local to want h
  to=$("$bin" keys show --key "$dir/accounts/account1.json" | awk '/[Aa]ddress/ {print $NF; exit}')
  "$bin" tx transfer --node "$(api 0)" --key "$dir/accounts/account0.json" --to "$to" --amount 1 --wait
  want=$(field height "$(status_json 0)")
  for i in $(seq 0 $((n - 1))); do
    for _ in $(seq 1 150); do
      h=$(field height "$(status_json "$i")")
      [ -n "$h" ] && [ "$h" -ge "${want:-1}" ] && continue 2
      sleep 0.2
    done
    die "node$i did not reach height ${want:-1} in 30 s; see $dir/logs/node$i.log"
  done
  echo
  echo "Phalanx netns testnet is up: $n validators, one network namespace each."
  for i in $(seq 0 $((n - 1))); do
    echo "  node$i  ns $(ns "$i")  api $(api "$i")  p2p /ip4/$(ip_of "$i")/tcp/$P2P_PORT  log $dir/logs/node$i.log"
  done
  echo
  echo "Send a transaction:"
  echo "  $bin tx transfer --node $(api 0) --key $dir/accounts/account0.json --to $to --amount 10 --wait"
  echo "Cut a node's link, look, and heal:"
  echo "  testnet/netns.sh partition 2 && testnet/netns.sh status && testnet/netns.sh heal"
  echo "Stop it:  testnet/netns.sh down"
}

status() {
  [ -d "$dir/pids" ] || die "no netns testnet in $dir (start one with \`testnet/netns.sh up\`)"
  local i pid state json
  for i in $(seq 0 $(($(count_homes) - 1))); do
    pid=$(node_pid "$i")
    if ours "$pid"; then state="running (pid $pid)"; else state="stopped"; fi
    printf 'node%s  %-20s link %-4s ' "$i" "$state" "$(link_state "$i")"
    if ours "$pid" && [ -x "$bin" ]; then
      if json=$(status_json "$i"); then
        printf 'height %s  view %s  primary %s  peers %s  api %s' \
          "$(field height "$json")" "$(field view "$json")" "$(field primary "$json")" \
          "$(peer_count "$json")" "$(api "$i")"
      else
        printf 'not answering on %s' "$(api "$i")"
      fi
    fi
    echo
  done
}

set_links() {
  local state="$1"; shift
  local i
  for i in "$@"; do
    ip link show "$(veth "$i")" >/dev/null 2>&1 || die "no link $(veth "$i"): is node$i part of the testnet in $dir?"
    ip link set "$(veth "$i")" "$state"
  done
}

partition() {
  need_root
  [ ${#node_args[@]} -gt 0 ] || die "which node(s)? e.g. \`testnet/netns.sh partition 2\`"
  set_links down "${node_args[@]}"
  echo "cut node(s) ${node_args[*]} off the network (their links are down; \`testnet/netns.sh heal\` restores them)"
}

heal() {
  need_root
  local l healed=0
  for l in $(our_veths); do
    ip link set "$l" up && healed=$((healed + 1))
  done
  echo "brought $healed link(s) up"
}

logs() {
  [ ${#node_args[@]} -gt 0 ] || die "which node? e.g. \`testnet/netns.sh logs 0\`"
  local f="$dir/logs/node${node_args[0]}.log"
  [ -f "$f" ] || die "no log $f"
  if [ -n "$follow" ]; then tail -f "$f"; else tail -n 200 "$f"; fi
}

down() {
  need_root
  local f pid stopped=0 pids=() l namespace
  for f in "$dir"/pids/node*.pid; do
    [ -e "$f" ] || continue
    pids+=("$(cat "$f")")
  done
  # After a crash the pid files may be gone: the nodes left in our namespaces.
  for namespace in $(our_namespaces); do
    for pid in $(ip netns pids "$namespace" 2>/dev/null || true); do pids+=("$pid"); done
  done
  local -A signalled=()
  for pid in "${pids[@]}"; do
    [ -z "${signalled[$pid]:-}" ] && ours "$pid" || continue
    kill -TERM "$pid" && signalled[$pid]=1 && stopped=$((stopped + 1))
  done
  for pid in "${!signalled[@]}"; do
    for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
    ours "$pid" && kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$dir"/pids/node*.pid
  # Deleting a veth removes both ends; a namespace goes when unmounted (its
  # cleanup in the kernel is asynchronous, so the veths go first, by name).
  for l in $(our_veths); do
    ip link del "$l" 2>/dev/null || true
  done
  for namespace in $(our_namespaces); do
    for pid in $(ip netns pids "$namespace" 2>/dev/null || true); do
      echo "warning: pid $pid still runs in $namespace and is not a node of $dir; left running" >&2
    done
    ip netns del "$namespace" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
  echo "stopped $stopped node(s); removed the namespaces, veths and bridge $bridge; chain data kept in $dir"
}

case "$cmd" in
  up) up ;;
  status) status ;;
  partition) partition ;;
  heal) heal ;;
  logs) logs ;;
  down) down ;;
  -h|--help|help|"") usage ;;
  *) usage >&2; die "unknown command: $cmd" ;;
esac
