#!/usr/bin/env bash
# Benchmark: what Agents whose image never builds cost. Starts a control plane on Docker with N
# Agents whose Dockerfile fails (`RUN exit 1` on the hermetic base), waits SECONDS, and prints a
# table: reconcile failures the controller logged, the controller's CPU time, and Events
# written (objects, and occurrences counted in their series).
#
# usage: hack/bench-failing-agents.sh [SECONDS] [N]     (defaults: 60, 10)
# env:   BBCTL        the bbctl to measure (default: this checkout's, built first); an older
#                     build measures "before"
#        CARGO_TARGET_DIR (default $HOME/.cache/bot-bottle/target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
agents=${2:-10}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}"
base=bot-bottle/base:bookworm
for tool in docker kubectl python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 1; }
done
docker image inspect "$base" >/dev/null 2>&1 || bash hack/build-base-image.sh "$base"
if [[ -z ${BBCTL:-} ]]; then
    cargo build -q -p bbctl -p bb-sidecar
    BBCTL=$CARGO_TARGET_DIR/debug/bbctl
fi
sidecar=${BB_SIDECAR:-$CARGO_TARGET_DIR/debug/bb-sidecar}

work=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n $pid ]]; then
        KUBECONFIG=$work/home/kubeconfig kubectl delete agents --all --wait=true --timeout=120s >/dev/null 2>&1 || true
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$BBCTL" controller run --home "$work/home" --listen 127.0.0.1:0 --backend docker \
    --base-image "$base" --sidecar-binary "$sidecar" 2>"$work/controller.log" &
pid=$!
for _ in $(seq 300); do
    [[ -f $work/home/kubeconfig ]] && break
    sleep 0.1
done
export KUBECONFIG=$work/home/kubeconfig

# A directory of its own: the Dockerfile's directory is the build context, and one that held
# the growing log would make every attempt a new image.
mkdir "$work/image"
printf 'FROM %s\nRUN exit 1\n' "$base" >"$work/image/Dockerfile"
{
    printf 'apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: broken}\n'
    printf 'spec: {agentProvider: {template: custom, dockerfile: %s, command: [bash]}}\n' "$work/image/Dockerfile"
    for i in $(seq "$agents"); do
        printf -- '---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: broken-%s}\nspec: {bottleRef: {name: broken}}\n' "$i"
    done
} >"$work/manifests.yaml"

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
kubectl apply -f "$work/manifests.yaml" >/dev/null
start=$(cpu)
sleep "$seconds"
end=$(cpu)
ticks=$(getconf CLK_TCK)
failures=$(grep -c 'agent reconcile failed' "$work/controller.log" || true)
read -r objects counted < <(kubectl get events -A -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(len(items), sum(e.get("count", 1) for e in items))')
failed=$(kubectl get agents -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Failed$' || true)
python3 - "$seconds" "$agents" "$((end - start))" "$ticks" "$failures" "$objects" "$counted" "$failed" <<'EOF'
import sys
secs, agents, ticks, hz, failures, objects, counted, failed = map(int, sys.argv[1:])
cpu = ticks / hz
print(f"| agents | window | reconcile failures | per agent per minute | controller CPU | of a core | Event objects | occurrences | Agents Failed |")
print(f"|---|---|---|---|---|---|---|---|---|")
print(f"| {agents} | {secs} s | {failures} | {failures / agents / (secs / 60):.1f} | {cpu:.2f} s | {100 * cpu / secs:.1f}% | {objects} | {counted} | {failed} |")
EOF
