#!/usr/bin/env bash
# Benchmark: an Agent's lifecycle on the Docker backend (images already built): apply -> Running,
# suspend -> Suspended, resume -> Running and fork -> Running (an Agent naming a running one in
# spec.source), each p50/p95 over N, next to a bare `docker run`, `docker stop`, `docker start`
# and `docker commit` of the same agent image in the same run; then a fork of a source that wrote
# 1 GB; then density: DENSITY idle bottles started side by side, the memory each holds (sidecar
# and agent containers) and what that makes of this machine's memory. Suspend stops and keeps
# the agent container; resume starts it again. Pooled claims: an AgentPool of 3 of the same
# Bottle, and an Agent applied once it is full, timed to Running both through kubectl (apply,
# then wait: two processes, as the other rows) and through one `bbctl apply --wait`.
#
# usage: hack/bench-lifecycle.sh [ITERATIONS]      (default 20)
# env:   DENSITY (idle bottles for the density phase, default 20; 0 skips it)
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

apply=(); suspend=(); resume=(); fork=(); run=(); stop=(); start=(); commit=()
patch() { kubectl patch "agent/$1" --type merge -p "{\"spec\":{\"suspend\":$2}}" >/dev/null; }
fork_of() { agent "$2" | sed "s/^spec: {\(.*\)}$/spec: {\1, source: {agentRef: {name: $1}}}/"; }
for i in $(seq "$n"); do
    t0=$(now); agent "life-$i" | kubectl apply -f - >/dev/null; phase_is "life-$i" Running
    apply+=("$(since "$t0")")
    t0=$(now); patch "life-$i" true; phase_is "life-$i" Suspended; suspend+=("$(since "$t0")")
    t0=$(now); patch "life-$i" false; phase_is "life-$i" Running; resume+=("$(since "$t0")")
    t0=$(now); fork_of "life-$i" "fork-$i" | kubectl apply -f - >/dev/null; phase_is "fork-$i" Running
    fork+=("$(since "$t0")")
    kubectl delete agent "life-$i" "fork-$i" --wait >/dev/null

    c="bb-bench-life-$i"
    t0=$(now); docker run -d --label bot-bottle.e2e=bench-lifecycle --name "$c" "$image" sleep infinity >/dev/null
    run+=("$(since "$t0")")
    t0=$(now); docker commit -p "$c" "bb-bench-commit:$i" >/dev/null; commit+=("$(since "$t0")")
    t0=$(now); docker stop -t 0 "$c" >/dev/null; stop+=("$(since "$t0")")
    t0=$(now); docker start "$c" >/dev/null; start+=("$(since "$t0")")
    docker rm -f "$c" >/dev/null
    docker rmi "bb-bench-commit:$i" >/dev/null
done

# Pooled claims, each once the pool is full again.
kubectl apply -f - >/dev/null <<YAML
apiVersion: bot-bottle.dev/v1alpha1
kind: AgentPool
metadata: {name: warm, namespace: default}
spec: {bottleRef: {name: bench}, size: 3}
YAML
pool_full() { kubectl wait --for=jsonpath='{.status.ready}'=3 agentpool/warm --timeout=300s >/dev/null; }
claimed() {
    [[ -n $(kubectl get agent "$1" -o jsonpath='{.status.bottleCopy.name}') ]] \
        || { echo "error: agent/$1 started a bottle of its own instead of claiming a member" >&2; exit 1; }
}
claim=(); claim_bbctl=()
for i in $(seq "$n"); do
    pool_full
    t0=$(now); agent "pooled-$i" | kubectl apply -f - >/dev/null; phase_is "pooled-$i" Running
    claim+=("$(since "$t0")"); claimed "pooled-$i"
    pool_full
    t0=$(now); agent "pooledb-$i" | "$bin/bbctl" apply --home "$home" --wait -f - >/dev/null
    claim_bbctl+=("$(since "$t0")"); claimed "pooledb-$i"
    kubectl delete agent "pooled-$i" "pooledb-$i" --wait >/dev/null
done
kubectl delete agentpool warm --wait >/dev/null

# A fork of a source whose container holds 1 GB it wrote itself (incompressible).
agent big | kubectl apply -f - >/dev/null; phase_is big Running
big=$(docker ps -q --filter label=bot-bottle.dev/agent=default/big --filter label=bot-bottle.dev/role=agent)
docker exec "$big" sh -c 'head -c 1073741824 /dev/urandom > /home/agent/1g.bin'
t0=$(now); fork_of big big-fork | kubectl apply -f - >/dev/null; phase_is big-fork Running
fork_1g=$(since "$t0")
kubectl delete agent big big-fork --wait >/dev/null

# The q quantile (nearest rank) of the values given.
q() { local p=$1; shift; printf '%s\n' "$@" | sort -n | awk -v p="$p" '{a[NR]=$1} END {i=int(p*NR+0.999999); if (i<1) i=1; print a[i]}'; }
row() { local name=$1; shift; printf '%-36s %8.3f %8.3f\n' "$name" "$(q 0.5 "$@")" "$(q 0.95 "$@")"; }
printf '\n%-36s %8s %8s   (seconds, %s runs, %s build)\n' "" p50 p95 "$n" "$profile"
row "apply -> Running (cold)" "${apply[@]}"
row "pooled claim -> Running (kubectl)" "${claim[@]}"
row "pooled claim -> Running (bbctl)" "${claim_bbctl[@]}"
row "suspend -> Suspended" "${suspend[@]}"
row "resume -> Running" "${resume[@]}"
row "fork (source running) -> Running" "${fork[@]}"
row "bare docker run -d (same image)" "${run[@]}"
row "bare docker stop -t 0" "${stop[@]}"
row "bare docker start" "${start[@]}"
row "bare docker commit -p (unchanged)" "${commit[@]}"
printf '%-36s %8.3f   (one run)\n' "fork of a source that wrote 1 GB" "$fork_1g"
printf '\none idle bottle (docker stats: container, used / limit):\n%s\n' "$mem"

# Density: DENSITY idle bottles side by side; what each holds, and what that makes of the
# memory this machine has (MemTotal less what was in use before they started).
d="${DENSITY:-20}"
[[ $d =~ ^[0-9]+$ ]] || { echo "error: DENSITY must be a whole number, not '$d'" >&2; exit 2; }
if (( d > 0 )); then
    avail0=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
    for i in $(seq "$d"); do agent "idle-$i"; echo ---; done | kubectl apply -f - >/dev/null
    for i in $(seq "$d"); do phase_is "idle-$i" Running; done
    sleep 5 # let start-up settle before reading memory
    stats=$(docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' \
        $(docker ps -q --filter label=bot-bottle.dev/role=sidecar --filter label=bot-bottle.dev/managed-by=bot-bottle) \
        $(docker ps -q --filter label=bot-bottle.dev/role=agent --filter label=bot-bottle.dev/managed-by=bot-bottle))
    # MiB as docker prints it (KiB, MiB or GiB).
    mib() { awk -v role="$1" '$1 ~ role"$" { v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+/, "", v); f=(u=="GiB")?1024:(u=="KiB")?1/1024:1; s+=v*f; n++ } END { printf "%.1f %d", s/n, n }'; }
    read -r side nside <<<"$(mib sidecar <<<"$stats")"
    read -r agt nagt <<<"$(mib agent <<<"$stats")"
    # Each container has its containerd shim: its proportional share (PSS) counts, shared
    # pages split among the shims.
    shim_pss=$(for p in $(pgrep -x containerd-shim); do awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null; done \
        | awk '{s+=$1; n++} END {printf "%.1f", (n ? s/n : 0)/1024}')
    per=$(awk -v a="$side" -v b="$agt" -v c="$shim_pss" 'BEGIN {printf "%.1f", a+b+2*c}')
    printf '\ndensity: %s idle bottles running (%s sidecars, %s agents)\n' "$d" "$nside" "$nagt"
    printf '  per bottle: sidecar %s MiB + agent %s MiB (docker stats) + 2 shims x %s MiB (PSS) = %s MiB\n' \
        "$side" "$agt" "$shim_pss" "$per"
    printf '  this machine: %s MiB available before they started -> about %s idle bottles by memory\n' \
        "$(( avail0 / 1024 ))" "$(awk -v m="$avail0" -v p="$per" 'BEGIN {printf "%d", m/1024/p}')"
    kubectl delete agents --all --wait >/dev/null
fi
