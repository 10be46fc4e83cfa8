#!/usr/bin/env bash
# Where the egress proxy's time goes: runs the release egress benchmark and samples the
# bb-sidecar process with perf while it serves 8 keep-alive clients, then prints the split
# between kernel and user time and the hottest functions.
#
# usage: hack/profile-egress.sh [SECONDS_PER_CELL]   (default 10)
# needs: perf (Debian's linux-perf), and perf_event_paranoid <= 1 or root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}"
command -v perf >/dev/null || { echo "error: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
secs=${1:-10}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Release build first, so the sampled binary is the one the bench runs.
cargo bench -q -p bb-sidecar --bench egress --no-run
cargo bench -q -p bb-sidecar --bench egress -- --seconds "$secs" >"$out/bench.txt" 2>&1 &
bench=$!
pid=""
for _ in $(seq 600); do
    pid=$(pgrep -n -f 'bb-sidecar egress' || true)
    [[ -n $pid ]] && break
    sleep 0.1
done
[[ -n $pid ]] || { echo "error: the benchmark started no bb-sidecar" >&2; kill "$bench"; exit 1; }
# The cells run direct with 1 and 8 clients, then bb-sidecar with 1 and 8: sample the middle
# of the fourth, the sidecar's 8-client cell.
sleep $((3 * secs + secs / 4))
perf record -q -F 999 -p "$pid" -o "$out/perf.data" -- sleep "$((secs / 2))" >"$out/record.log" 2>&1 || { cat "$out/record.log" >&2; exit 1; }
wait "$bench" || true
echo "## samples by object ([kernel.kallsyms] is the kernel)"
perf report -q -i "$out/perf.data" --sort dso --stdio | grep -v '^$' | head -12
echo "## hottest symbols"
perf report -q -i "$out/perf.data" --sort dso,sym --stdio | grep -v '^$' | head -40
