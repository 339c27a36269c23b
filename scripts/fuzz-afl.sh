#!/usr/bin/env bash
# Coverage-guided fuzzing of Phalanx's decoders with AFL++ (cargo-afl), on
# the stable toolchain. The targets are the package fuzz/afl (its own
# workspace and Cargo.lock, outside the main workspace: CI never builds it);
# scripts/fuzz.sh is the mutation fuzzer CI runs a short pass of.
#
# Installs what is missing (cargo-afl from crates.io, then AFL++ built from
# the source cargo-afl ships, which needs make and a C compiler), builds
# the targets instrumented, writes the seed corpora (valid encodings of
# real values) and runs each target for --seconds, then prints per target:
# executions, executions/s, corpus size, new paths found, edges covered,
# crashes and hangs. Exits 1 if any target saved a crash or a hang.
#
#   scripts/fuzz-afl.sh                               # every target, 600 s each
#   scripts/fuzz-afl.sh --seconds 60 --target pbft-message
#   scripts/fuzz-afl.sh --fresh                       # forget earlier corpora
#   scripts/fuzz-afl.sh --list
#
# Output stays in fuzz/afl/out/TARGET/ (ignored by git); a second run
# resumes from the corpus the first one found unless --fresh (and then
# prints figures that add up both runs). Replay a
# finding outside AFL with: TARGET_BINARY < fuzz/afl/out/TARGET/default/crashes/id:...
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
afl_dir=$root/fuzz/afl

CARGO_AFL_VERSION=0.18.2 # the same version as the afl crate in fuzz/afl/Cargo.lock
all_targets=(pbft-message cft-message sync-blocks http-batch genesis)
seconds=600
targets=()
fresh=0
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=${2:?--seconds N}; shift 2 ;;
        --target) targets+=("${2:?--target NAME}"); shift 2 ;;
        --fresh) fresh=1; shift ;;
        --list) printf '%s\n' "${all_targets[@]}"; exit 0 ;;
        *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    case " ${all_targets[*]} " in
        *" $t "*) ;;
        *) echo "unknown target $t (--list)" >&2; exit 2 ;;
    esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/phalanx-target-afl}"
bin=$CARGO_TARGET_DIR/release

# 1. cargo-afl, and AFL++ built for this rustc.
if [ "$(cargo afl --version 2>/dev/null | awk '{print $2}')" != "$CARGO_AFL_VERSION" ]; then
    echo "== installing cargo-afl $CARGO_AFL_VERSION (crates.io)"
    cargo install cargo-afl --version "$CARGO_AFL_VERSION" --locked
fi
log=$(mktemp)
if ! cargo afl config --build >"$log" 2>&1; then
    if ! grep -q 'already built' "$log"; then
        cat "$log" >&2
        echo "building AFL++ failed (it needs make and a C compiler: apt-get install build-essential)" >&2
        exit 1
    fi
else
    echo "== built AFL++ for $(rustc --version)"
fi
rm -f "$log"

# 2. The instrumented targets and the seed writer.
echo "== building fuzz/afl (cargo afl build --release, target dir $CARGO_TARGET_DIR)"
cargo afl build --release --locked -q --manifest-path "$afl_dir/Cargo.toml"
"$bin/afl-seeds" "$afl_dir/seeds" >/dev/null

# 3. Each target for $seconds.
# Persistent mode; no UI (the figures are read from fuzzer_stats). AFL++'s
# checks of the CPU governor and of core_pattern are for dedicated fuzzing
# hosts: skipped here (a crash is still caught, through the fork server).
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_AUTORESUME=1
status=0
mkdir -p "$afl_dir/out"
printf '%-13s %8s %12s %9s %7s %6s %12s %8s %6s\n' \
    target seconds execs execs/s corpus found edges crashes hangs
for t in "${targets[@]}"; do
    out=$afl_dir/out/$t
    [ $fresh = 1 ] && rm -rf "$out"
    # -m 256: no input may make a decoder hold more than 256 MiB (as
    # phalanx-fuzz's MAX_RESIDENT); a failed allocation aborts: a crash.
    # -t 200: an input that takes over 200 ms is a hang.
    nice -n 10 cargo afl fuzz -i "$afl_dir/seeds/$t" -o "$out" -V "$seconds" -m 256 -t 200 \
        "$bin/$t" >"$afl_dir/out/$t.log" 2>&1 || {
        echo "afl-fuzz failed for $t; see fuzz/afl/out/$t.log" >&2
        tail -5 "$afl_dir/out/$t.log" >&2
        status=1
        continue
    }
    stats=$out/default/fuzzer_stats
    s() { awk -v k="$1" '$1 == k { print $3 }' "$stats"; }
    printf '%-13s %8s %12s %9.0f %7s %6s %12s %8s %6s\n' "$t" "$(s run_time)" "$(s execs_done)" \
        "$(s execs_per_sec)" "$(s corpus_count)" "$(s corpus_found)" \
        "$(s edges_found)/$(s total_edges)" "$(s saved_crashes)" "$(s saved_hangs)"
    if [ "$(s saved_crashes)" != 0 ] || [ "$(s saved_hangs)" != 0 ]; then
        status=1
        for f in "$out"/default/crashes/id:* "$out"/default/hangs/id:*; do
            [ -e "$f" ] && echo "  finding: $bin/$t < '$f'"
        done
    fi
done
exit $status
