#!/usr/bin/env bash
# Benchmark the egress proxy against mitmproxy on this machine: installs mitmproxy 11 from PyPI
# into a cached virtualenv (once), then runs the release-built benchmark, which prints a table of
# requests/s (1 and 8 keep-alive clients), added p50 latency and peak RSS for a direct
# connection, bb-sidecar and mitmdump against the same local HTTPS upstream; then the size of
# the sidecar image built from the release binary.
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

# The sidecar image as shipped: the release bb-sidecar on the sidecar Dockerfile (target: 25 MB).
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    # The registry-free base the product ships on (a fresh machine builds it once).
    base="bot-bottle/base:bookworm"
    hack/build-base-image.sh "$base" >/dev/null
    ctx="$(mktemp -d)"
    trap 'rm -rf "$ctx"' EXIT
    cargo build -q --release -p bb-sidecar
    cp images/sidecar/Dockerfile "$CARGO_TARGET_DIR/release/bb-sidecar" "$ctx/"
    docker build -q --build-arg "BASE=$base" -t bot-bottle/sidecar:bench "$ctx" >/dev/null
    size=$(docker image inspect -f '{{.Size}}' bot-bottle/sidecar:bench)
    binary=$(stat -c %s "$ctx/bb-sidecar")
    awk -v base="$base" -v size="$size" -v bin="$binary" 'BEGIN {
        printf "\n| sidecar image (release, on %s) | %.1f MB | binary %.1f MB |\n", base, size / 1e6, bin / 1e6 }'
    docker rmi -f bot-bottle/sidecar:bench >/dev/null
fi
