#!/usr/bin/env bash
# Fetches the pinned harness executables into DIR for `bbctl controller run --harness-dir DIR`:
# provider images then take them from there instead of fetching them during `docker build`
# (air-gapped machines, CI, and engines whose builds cannot reach PyPI). Only PyPI is used.
#
#   hack/fetch-harnesses.sh [DIR]   (default: $HOME/.cache/bot-bottle/harnesses)
#
# Claude Code: the native binary the claude-agent-sdk wheel bundles, at the version pinned in
# images/claude/Dockerfile. Fetched again only when the pin changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$HOME/.cache/bot-bottle/harnesses}
mkdir -p "$dir"

pin() { sed -n "s/^ARG $1=//p" "$root/$2" | head -n1; }

sdk=$(pin CLAUDE_AGENT_SDK_VERSION images/claude/Dockerfile)
if [ -z "$sdk" ]; then
    echo "fetch-harnesses: no CLAUDE_AGENT_SDK_VERSION pin in images/claude/Dockerfile" >&2
    exit 1
fi
if [ -x "$dir/claude" ] && [ "$(cat "$dir/claude.pin" 2>/dev/null)" = "claude-agent-sdk==$sdk" ]; then
    echo "claude: claude-agent-sdk==$sdk already in $dir"
else
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --platform "manylinux_2_17_$(uname -m)" --python-version 3.11 \
        "claude-agent-sdk==$sdk" -d "$tmp"
    python3 - "$tmp" "$dir/claude.new" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/claude_agent_sdk-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("claude_agent_sdk/_bundled/claude"))
PY
    chmod 0755 "$dir/claude.new"
    mv "$dir/claude.new" "$dir/claude"
    echo "claude-agent-sdk==$sdk" > "$dir/claude.pin"
    echo "claude: $("$dir/claude" --version) from claude-agent-sdk==$sdk into $dir"
fi
