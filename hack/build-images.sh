#!/usr/bin/env bash
# Builds bot-bottle's images with no registry: the debootstrap base (hack/build-base-image.sh),
# then the sidecar and test-agent images from images/*/Dockerfile with that base as BASE.
# The controller builds the same Dockerfiles itself (tagged by content hash) when it needs
# them; this script is for inspecting them by hand or pre-loading an offline machine.
#
# usage: hack/build-images.sh            -> bot-bottle/base:bookworm, bot-bottle/sidecar:dev,
#                                           bot-bottle/test-agent:dev
# env:   CARGO_TARGET_DIR (default $HOME/.cache/bot-bottle/target)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}"
base=bot-bottle/base:bookworm
hack/build-base-image.sh "$base"

cargo build -q -p bb-sidecar
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp images/sidecar/Dockerfile "$ctx/"
cp "$CARGO_TARGET_DIR/debug/bb-sidecar" "$ctx/"
docker build -q --build-arg "BASE=$base" -t bot-bottle/sidecar:dev "$ctx" >/dev/null
echo "built bot-bottle/sidecar:dev"
docker build -q --build-arg "BASE=$base" -t bot-bottle/test-agent:dev images/test-agent >/dev/null
echo "built bot-bottle/test-agent:dev"
