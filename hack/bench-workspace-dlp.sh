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
python3 - "${1:-$HOME/.cargo/registry/src}" "$corpus" "${BB_BENCH_CORPUS_MB:-40}" <<'PY'
import os, shutil, sys
src, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]) * 1_000_000
total = 0
for d, dirs, files in sorted(os.walk(src)):
    dirs.sort()
    for f in sorted(files):
        if not f.endswith(('.rs', '.toml', '.md', '.py', '.json', '.yml', '.yaml', '.sh', '.c', '.h', '.env', '.cfg', '.ini')):
            continue
        p = os.path.join(d, f)
        size = os.path.getsize(p)
        if size > 512_000:
            continue
        dst = os.path.join(out, os.path.relpath(p, src))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(p, dst)
        total += size
        if total >= limit:
            sys.exit(0)
PY
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
