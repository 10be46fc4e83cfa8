#!/usr/bin/env bash
# Benchmark: cluster mode's claim throughput (three runner processes, fake backend, 300 Agents)
# and the hand-over time after a runner is killed. Prints a table (tests/benches/cluster.rs).
#
# env: CARGO_TARGET_DIR (default $HOME/.cache/bot-bottle/target)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}"
# The debug binaries the suites use: what is measured is mostly the API and the Lease timing.
cargo build -q -p bbctl
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! cargo bench -q --profile dev -p bb-e2e --bench cluster >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
grep '^|' "$log"
