#!/usr/bin/env bash
# Regenerates charts/bot-bottle/crds/ from the Rust types in crds/src.
set -euo pipefail
cd "$(dirname "$0")/.."
out=charts/bot-bottle/crds
mkdir -p "$out"
# Build before deleting so a compile error never leaves the chart without CRDs.
cargo build --quiet -p bbctl
rm -f "$out"/*.yaml
cargo run --quiet -p bbctl -- crds --output-dir "$out"
