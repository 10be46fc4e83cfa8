#!/usr/bin/env bash
# Where the egress proxy's time goes: runs the release egress benchmark and samples the
# bb-sidecar process with perf while it serves 8 (or 1) keep-alive clients, then prints the
# split between kernel and user time and the hottest functions.
#
# usage: hack/profile-egress.sh [SECONDS_PER_CELL [CLIENTS]]   (default 10 s, 8 clients; 1 or 8)
# needs: perf (Debian's linux-perf), and perf_event_paranoid <= 1 or root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}"
command -v perf >/dev/null || { echo "error: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
secs=${1:-10}
clients=${2:-8}
[[ $clients == 1 || $clients == 8 ]] || { echo "error: CLIENTS must be 1 or 8, not $clients" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Release build first, so the sampled binary is the one the bench runs.
cargo bench -q -p bb-sidecar --bench egress --no-run
cargo bench -q -p bb-sidecar --bench egress -- --seconds "$secs" --requests-only >"$out/bench.txt" 2>&1 &
bench=$!
pid=""
for _ in $(seq 600); do
    pid=$(pgrep -n -f 'bb-sidecar egress' || true)
    [[ -n $pid ]] && break
    sleep 0.1
done
[[ -n $pid ]] || { echo "error: the benchmark started no bb-sidecar" >&2; kill "$bench"; exit 1; }
# The cells run direct, the copying tunnel, then bb-sidecar, each with 1 and then 8 clients:
# sample the middle of the fifth (the sidecar's 1-client cell) or the sixth (its 8).
cell=$([[ $clients == 1 ]] && echo 4 || echo 5)
sleep $((cell * secs + secs / 4))
perf record -q -F 999 -p "$pid" -o "$out/perf.data" -- sleep "$((secs / 2))" >"$out/record.log" 2>&1 || { cat "$out/record.log" >&2; exit 1; }
wait "$bench" || true
echo "## samples by object ([kernel.kallsyms] is the kernel)"
perf report -q -i "$out/perf.data" --sort dso --stdio | grep -v '^$' | head -12
echo "## hottest symbols"
perf report -q -i "$out/perf.data" --sort dso,sym --stdio | grep -v '^$' | head -40
