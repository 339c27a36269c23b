#!/usr/bin/env bash
# Runs every Phalanx test. Installs missing build prerequisites first.
# The first build compiles RocksDB from source (10-20 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
cargo test --workspace --locked "$@"
