#!/usr/bin/env bash
# Benchmark: an Agent's lifecycle on the Docker backend (images already built): apply -> Running,
# suspend -> Suspended and resume -> Running, each p50/p95 over N, next to a bare `docker run`,
# `docker stop` and `docker start` of the same agent image in the same run; then the memory one
# idle bottle holds (sidecar and agent containers). Suspend stops and keeps the agent
# container; resume starts it again (#34; pools and fork rows are added as they land).
#
# usage: hack/bench-lifecycle.sh [ITERATIONS]      (default 20)
# env:   CARGO_TARGET_DIR (default $HOME/.cache/bot-bottle/target), PROFILE (debug|release)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20}"
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "error: ITERATIONS must be a positive integer, not '$n'" >&2; exit 2; }
BENCH_LABEL=bench-lifecycle
# shellcheck source=hack/lib/docker-bench.sh
source hack/lib/docker-bench.sh
since() { echo "$(now) - $1" | bc; }
phase_is() { kubectl wait --for=jsonpath="{.status.phase}=$2" "agent/$1" --timeout=300s >/dev/null; }

# Warm-up: builds the sidecar and agent images once.
agent warm | kubectl apply -f - >/dev/null
phase_is warm Running
image=$(docker ps --filter label=bot-bottle.dev/agent=default/warm --filter label=bot-bottle.dev/role=agent --format '{{.Image}}')
# One idle bottle's memory, as the engine accounts it (cgroup v1: includes page cache).
mem=$(docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' \
    $(docker ps -q --filter label=bot-bottle.dev/agent=default/warm))
kubectl delete agent warm --wait >/dev/null

apply=(); suspend=(); resume=(); run=(); stop=(); start=()
patch() { kubectl patch "agent/$1" --type merge -p "{\"spec\":{\"suspend\":$2}}" >/dev/null; }
for i in $(seq "$n"); do
    t0=$(now); agent "life-$i" | kubectl apply -f - >/dev/null; phase_is "life-$i" Running
    apply+=("$(since "$t0")")
    t0=$(now); patch "life-$i" true; phase_is "life-$i" Suspended; suspend+=("$(since "$t0")")
    t0=$(now); patch "life-$i" false; phase_is "life-$i" Running; resume+=("$(since "$t0")")
    kubectl delete agent "life-$i" --wait >/dev/null

    c="bb-bench-life-$i"
    t0=$(now); docker run -d --label bot-bottle.e2e=bench-lifecycle --name "$c" "$image" sleep infinity >/dev/null
    run+=("$(since "$t0")")
    t0=$(now); docker stop -t 0 "$c" >/dev/null; stop+=("$(since "$t0")")
    t0=$(now); docker start "$c" >/dev/null; start+=("$(since "$t0")")
    docker rm -f "$c" >/dev/null
done

# The q quantile (nearest rank) of the values given.
q() { local p=$1; shift; printf '%s\n' "$@" | sort -n | awk -v p="$p" '{a[NR]=$1} END {i=int(p*NR+0.999999); if (i<1) i=1; print a[i]}'; }
row() { local name=$1; shift; printf '%-36s %8.3f %8.3f\n' "$name" "$(q 0.5 "$@")" "$(q 0.95 "$@")"; }
printf '\n%-36s %8s %8s   (seconds, %s runs, %s build)\n' "" p50 p95 "$n" "$profile"
row "apply -> Running (cold)" "${apply[@]}"
row "suspend -> Suspended" "${suspend[@]}"
row "resume -> Running" "${resume[@]}"
row "bare docker run -d (same image)" "${run[@]}"
row "bare docker stop -t 0" "${stop[@]}"
row "bare docker start" "${start[@]}"
printf '\none idle bottle (docker stats: container, used / limit):\n%s\n' "$mem"
