#!/usr/bin/env bash
# Prints how long the workspace takes to build (dev profile, all targets) from empty and after a
# one-line change in each of a few files. Usage: hack/bench-build.sh [REV] (default HEAD).
# BENCH_FILES overrides the files touched. Builds a clone in a fresh target directory.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
rev="${1:-HEAD}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/src"
git -C "$work/src" checkout -q "$rev"
export CARGO_TARGET_DIR="$work/target" CARGO_TERM_COLOR=never
cd "$work/src"
cargo fetch -q
secs() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
build() { cargo build --workspace --all-targets; }
printf '%-60s %8s\n' "build of $(git rev-parse --short HEAD) ($(nproc) cores, dev, all targets)" "seconds"
printf '%-60s %8.1f\n' "from empty" "$(secs build)"
for f in ${BENCH_FILES:-crds/src/lib.rs controller/backend/src/hash.rs controller/runner/src/reconcile/agent.rs sidecar/src/lib.rs cli/src/main.rs}; do
  [ -f "$f" ] || { echo "no file $f at $rev" >&2; exit 1; }
  echo "// bench-build" >> "$f"
  printf '%-60s %8.1f\n' "after a change to $f" "$(secs build)"
done
