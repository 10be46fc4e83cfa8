#!/usr/bin/env bash
# Workspace secrets, measured: discovery's recall on a planted workspace (120 values in six
# credential formats) and what it flags in a clean corpus of real files; outbound DLP's recall
# on leak payloads (encodings and truncations) and its false-positive lines on the corpus, with
# and without the discovered needles; DLP throughput with the bottle's one token and with 1,000.
#
#   hack/bench-workspace-dlp.sh [CORPUS_DIR]   (default: text files of ~/.cargo/registry/src, ~40 MB)
# env: BB_BENCH_CORPUS_MB (40)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpus=$work/corpus
mkdir -p "$corpus"
python3 "$(dirname "$0")/corpus.py" "${1:-$HOME/.cargo/registry/src}" "$corpus" "${BB_BENCH_CORPUS_MB:-40}" --config
cd "$root"
out=$(cargo bench -q -p bb-e2e --bench workspace_dlp -- --corpus "$corpus")
get() { awk -v k="$1" '$1 == k {print $2}' <<<"$out"; }
echo "| measure | with discovery | without |"
echo "|---|---|---|"
echo "| planted workspace secrets discovered | $(get planted_discovered) / $(get planted_secrets) ($(get planted_discovery_ms) ms) | - |"
# recall[FORM WORDS] WITH WITHOUT: the form may hold spaces.
grep '^recall\[' <<<"$out" | sed -E 's/^recall\[(.*)\] ([0-9]+\/[0-9]+) ([0-9]+\/[0-9]+)$/\1|\2|\3/' |
    while IFS='|' read -r form with without; do
        echo "| leak payloads refused: $form | $with | $without |"
    done
echo "| clean corpus: files / MB read by discovery | $(get corpus_files) / $(get corpus_mb) MB at $(get corpus_discovery_mb_s) MB/s | - |"
echo "| clean corpus: values discovery would guard | $(get corpus_discovered) | - |"
echo "| clean corpus: request lines refused (of $(get corpus_lines)) | $(get fp_lines_with_discovery) | $(get fp_lines_without_discovery) |"
for n in 1_needle 100_needles 1000_needles; do
    echo "| outbound DLP, 64 KiB bodies, ${n/_/ } | $(get "mb_s[$n]") MB/s, matcher $(get "matcher_kib[$n]") KiB | - |"
done
