#!/usr/bin/env bash
# Benchmark: how fast a killed runner's copy is fenced, and how fast its Agent runs elsewhere.
# Runs tests/tests/docker_cluster.rs's kill -9 case N times on the real Docker engine (two
# runners, one engine, the agent calling a stand-in upstream) and prints p50 and max of the
# time from kill -9 to the orphan's first runner-lost refusal, to the last request that
# reached the upstream, and to Running on the other runner.
#
# usage: hack/bench-fence.sh [N]   (default 10)
# env: CARGO_TARGET_DIR (default $HOME/.cache/bot-bottle/target)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}"
n=${1:-10}
cargo build -q --workspace --bins
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$n"); do
    log=$(mktemp)
    if ! cargo test -q -p bb-e2e --test docker_cluster a_killed_runners_copy_is_fenced_before_its_agent_runs_elsewhere -- --nocapture >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    # fence: first refusal F ms after kill -9; last request through sent T ms after; last
    # arrival upstream A ms after; Running elsewhere R ms after
    grep '^fence:' "$log" | grep -oE -- '-?[0-9]+ ms' | awk '{printf "%s ", $1} END {print ""}' >>"$out"
    rm -f "$log"
    echo "run $i/$n: $(tail -1 "$out")" >&2
done
stat() { sort -n | awk '{a[NR]=$1} END {printf "%d ms | %d ms", a[int((NR+1)/2)], a[NR]}'; }
echo "| after kill -9 ($n runs, 2 cores, Docker) | p50 | max |"
echo "|---|---|---|"
echo "| orphan's first runner-lost refusal (fence) | $(cut -d' ' -f1 "$out" | stat) |"
echo "| last request of the orphan sent that reached the upstream | $(cut -d' ' -f2 "$out" | stat) |"
echo "| last arrival at the upstream | $(cut -d' ' -f3 "$out" | stat) |"
echo "| the Agent Running on the other runner (hand-over) | $(cut -d' ' -f4 "$out" | stat) |"
