#!/usr/bin/env bash
# Benchmark the egress proxy against mitmproxy on this machine: installs mitmproxy 11 from PyPI
# into a cached virtualenv (once), then runs the release-built benchmark, which prints a table of
# requests/s (1 and 8 keep-alive clients), added p50 latency and peak RSS for a direct
# connection, bb-sidecar and mitmdump against the same local HTTPS upstream.
#
# usage: hack/bench-egress.sh [SECONDS_PER_CELL]      (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}"
venv="$HOME/.cache/bot-bottle/mitm-venv"
if [[ ! -x "$venv/bin/mitmdump" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "mitmproxy==11.*"
fi
cargo bench -p bb-sidecar --bench egress -- --seconds "${1:-5}" --mitmdump "$venv/bin/mitmdump"
