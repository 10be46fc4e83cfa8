#!/usr/bin/env bash
# Benchmark: supervise latencies on Docker over 50 proposals: a proposal's arrival in the
# sidecar's queue -> its Proposal served by the API, and a decision -> the agent's request to
# the granted host allowed. Prints a table (tests/benches/supervise.rs).
#
# env: CARGO_TARGET_DIR (default $HOME/.cache/bot-bottle/target)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}"
# The bench drives the binaries of its own profile: the debug ones the suites use (what is
# measured is waiting on files, the API and Docker, not the controller's CPU).
cargo build -q -p bbctl -p bb-sidecar
hack/build-base-image.sh >/dev/null
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! cargo bench -q --profile dev -p bb-e2e --bench supervise >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
grep '^|' "$log"
