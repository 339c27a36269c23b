#!/usr/bin/env bash
# Fuzzes every decoder of bytes from a peer, a client or a file (consensus
# and sync messages, transaction batches, HTTP bodies, key, genesis and
# config files) with the phalanx-fuzz mutation fuzzer: a million inputs per
# target by default, 0 panics and a bounded peak memory required. On demand;
# CI runs a short pass as a test (cargo test -p phalanx-fuzz).
#
#   scripts/fuzz.sh                     # every target, 1,000,000 inputs each
#   scripts/fuzz.sh --inputs 100000 --target pbft-message --seed 7
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/phalanx-target}"
cargo build --release --locked -q -p phalanx-fuzz --bin phalanx-fuzz
exec "$CARGO_TARGET_DIR/release/phalanx-fuzz" "$@"
