#!/usr/bin/env bash
# Provider images on this machine: build time (cold, and warm from the layer cache) and size per
# provider, then apply -> Running for a claude Agent whose images are built, next to a bare
# `docker run` of the same image. Prints a table. Needs Docker, the hermetic base (or BASE=...)
# and `cargo build --workspace`; harnesses come from hack/fetch-harnesses.sh.
#
#   hack/bench-providers.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base=${BASE:-bot-bottle/base:bookworm}
harnesses=${BOT_BOTTLE_HARNESS_DIR:-$HOME/.cache/bot-bottle/harnesses}
target=${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}
bbctl="$target/debug/bbctl"
bash "$root/hack/fetch-harnesses.sh" "$harnesses" >/dev/null
work=$(mktemp -d)
cleanup() {
    [ -n "${cp:-}" ] && kill "$cp" 2>/dev/null && wait "$cp" 2>/dev/null || true
    docker ps -aq --filter label=bot-bottle.dev/agent=default/bench | xargs -r docker rm -f >/dev/null
    docker network ls -q --filter label=bot-bottle.dev/agent=default/bench | xargs -r docker network rm >/dev/null
    docker rmi -f bb-bench/claude bb-bench/codex >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc | xargs printf '%.1f'; }

rows=()
for p in claude codex; do
    ctx="$work/$p"
    mkdir -p "$ctx"
    cp "$root/images/$p/Dockerfile" "$ctx/"
    cp -r "$harnesses/$p" "$ctx/$p"
    arg=$(echo "$p" | tr a-z A-Z)_SOURCE
    # The classic builder, as the controller's Engine API builds use.
    t0=$(now)
    DOCKER_BUILDKIT=0 docker build -q --no-cache --build-arg "BASE=$base" --build-arg "$arg=context" -t "bb-bench/$p" "$ctx" >/dev/null 2>&1
    t1=$(now)
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base" --build-arg "$arg=context" -t "bb-bench/$p" "$ctx" >/dev/null 2>&1
    t2=$(now)
    size=$(docker image inspect -f '{{.Size}}' "bb-bench/$p")
    t3=$(now)
    docker run --rm "bb-bench/$p" true
    t4=$(now)
    rows+=("$p|$(secs "$t0" "$t1")|$(secs "$t1" "$t2")|$((size / 1000000))|$(secs "$t3" "$t4")")
done

# apply -> Running through the controller, with the claude image already built.
home="$work/home"
"$bbctl" controller run --home "$home" --listen 127.0.0.1:0 --backend docker \
    --base-image "$base" --sidecar-binary "$target/debug/bb-sidecar" \
    --harness-dir "$harnesses" >"$work/controller.log" 2>&1 &
cp=$!
for _ in $(seq 100); do [ -f "$home/kubeconfig" ] && break; sleep 0.2; done
k() { kubectl --kubeconfig "$home/kubeconfig" "$@"; }
apply_running() {
    k delete agent bench --wait=true --ignore-not-found >/dev/null
    local t0 t1
    t0=$(now)
    k apply -f - >/dev/null <<'YAML'
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {name: bench}
spec: {agentProvider: {template: claude}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {name: bench, namespace: default}
spec: {bottleRef: {name: bench}}
YAML
    until [ "$(k get agent bench -o jsonpath='{.status.phase}' 2>/dev/null)" = Running ]; do sleep 0.05; done
    t1=$(now)
    secs "$t0" "$t1"
}
first=$(apply_running)
warm=$(apply_running)
image=$(k get agent bench -o jsonpath='{.status.conditions[?(@.type=="ImagesReady")].message}' | sed 's/^image //')
t0=$(now); docker run --rm "$image" true; t1=$(now)
bare=$(secs "$t0" "$t1")

printf '%-8s %14s %14s %10s %16s\n' provider "cold build s" "warm build s" "size MB" "docker run s"
for r in "${rows[@]}"; do
    IFS='|' read -r p c w s d <<<"$r"
    printf '%-8s %14s %14s %10s %16s\n' "$p" "$c" "$w" "$s" "$d"
done
echo
printf 'claude Agent, apply -> Running: %ss first (sidecar image and provider image from cache or built), %ss again with every image built; bare docker run of %s: %ss\n' "$first" "$warm" "$image" "$bare"
