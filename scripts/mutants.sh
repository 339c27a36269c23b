#!/usr/bin/env bash
# Shows the simulator's checkers have teeth: for each deliberately broken
# engine in docs/mutations/*.patch, apply the patch in a temporary git
# worktree (the working tree is never touched), run the simulator sweep in
# chunks from seed 0 until a schedule fails or --seeds are used up, and
# print one line per mutation. Exits non-zero if any mutation is not caught
# (or does not build). Run by hand; not part of CI. See docs/mutations.md.
#
#   scripts/mutants.sh                       # every docs/mutations/*.patch
#   scripts/mutants.sh --seeds 1000 docs/mutations/survived/*.patch
#
# Options: --seeds N (most schedules per mutation, default 500),
#          --chunk N (schedules per sweep, default 50), --threads N (default 1).
# Each patch may name its simulator flags in a header line
# "Sim-args: --validators 7" (default: --validators 4).
# CARGO_TARGET_DIR defaults to ~/.cache/phalanx-target-mutants; only the
# phalanx-testnet test binary is built (never the node crate).
set -euo pipefail

seeds=500
chunk=50
threads=1
patches=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) seeds="$2"; shift 2 ;;
        --chunk) chunk="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) patches+=("$(realpath "$1")"); shift ;;
    esac
done

root="$(git rev-parse --show-toplevel)"
if [ ${#patches[@]} -eq 0 ]; then
    for p in "$root"/docs/mutations/*.patch; do patches+=("$p"); done
fi
command -v jq >/dev/null || { echo "mutants.sh needs jq" >&2; exit 2; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/phalanx-target-mutants}"
wt="$(mktemp -d "${TMPDIR:-/tmp}/phalanx-mutants.XXXXXX")"
log="$wt.log"
cleanup() {
    git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1 || true
    rm -rf "$wt" "$log"
    git -C "$root" worktree prune
}
trap cleanup EXIT
git -C "$root" worktree add --detach -q "$wt" HEAD

failed=0
for patch in "${patches[@]}"; do
    name="$(basename "$patch" .patch)"
    args="$(sed -n 's/^Sim-args: *//p' "$patch" | head -n1)"
    args="${args:---validators 4}"
    git -C "$wt" checkout -q -- .
    if ! git -C "$wt" apply "$patch"; then
        printf '%-40s ERROR: patch does not apply to HEAD\n' "$name"
        failed=1
        continue
    fi
    result=""
    start=0
    while [ "$start" -lt "$seeds" ]; do
        n=$(( seeds - start < chunk ? seeds - start : chunk ))
        # The test fails when the sweep finds a violation: judge by the JSON.
        ( cd "$wt" && PHALANX_SIM_ARGS="$args --seeds $n --start-seed $start --threads $threads --json" \
            cargo test --release -q -p phalanx-testnet --test sim sweep_from_env \
            -- --ignored --nocapture ) >"$log" 2>&1 || true
        json="$(sed -n '/^{/,/^}/p' "$log")"
        if [ -z "$json" ]; then
            result="ERROR: no sweep report (build failure?), see the last lines:"
            tail -n 15 "$log" >&2
            break
        fi
        first="$(jq -r '[.failures[].seed] | min // empty' <<<"$json")"
        if [ -n "$first" ]; then
            kinds="$(jq -r '.totals.violations | to_entries | map(.key) | join(",")' <<<"$json")"
            result="caught at seed $first ($(( first + 1 )) schedules; $kinds)"
            break
        fi
        start=$(( start + n ))
    done
    git -C "$wt" checkout -q -- .
    if [ -z "$result" ]; then
        result="NOT caught in $seeds schedules ($args)"
    fi
    case "$result" in caught*) ;; *) failed=1 ;; esac
    printf '%-40s %s\n' "$name" "$result"
done
exit "$failed"
