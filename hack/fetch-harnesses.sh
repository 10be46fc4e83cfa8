#!/usr/bin/env bash
# Fetches the pinned harness executables into DIR for `bbctl controller run --harness-dir DIR`:
# provider images then take them from there instead of fetching them during `docker build`
# (air-gapped machines, CI, and engines whose builds cannot reach PyPI). Only PyPI is used.
#
#   hack/fetch-harnesses.sh [DIR]   (default: $HOME/.cache/bot-bottle/harnesses)
#
# Claude Code: the native binary the claude-agent-sdk wheel bundles; Codex: the package the
# openai-codex-cli-bin wheel carries (bin/codex and its helpers); each at the version pinned in
# its images/*/Dockerfile, and fetched again only when the pin changes.
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

codex=$(pin CODEX_VERSION images/codex/Dockerfile)
if [ -z "$codex" ]; then
    echo "fetch-harnesses: no CODEX_VERSION pin in images/codex/Dockerfile" >&2
    exit 1
fi
if [ -x "$dir/codex/bin/codex" ] && [ "$(cat "$dir/codex.pin" 2>/dev/null)" = "openai-codex-cli-bin==$codex" ]; then
    echo "codex: openai-codex-cli-bin==$codex already in $dir"
else
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --platform "manylinux_2_17_$(uname -m)" --python-version 3.11 \
        "openai-codex-cli-bin==$codex" -d "$tmp"
    rm -rf "$dir/codex.new"
    python3 - "$tmp" "$dir/codex.new" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/openai_codex_cli_bin-*.whl")[0]
out = sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if not info.filename.startswith("codex_cli_bin/") or info.is_dir():
            continue
        rel = info.filename[len("codex_cli_bin/"):]
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(z.read(info))
        if rel.startswith(("bin/", "codex-path/", "codex-resources/")):
            os.chmod(path, 0o755)
PY
    rm -rf "$dir/codex"
    mv "$dir/codex.new" "$dir/codex"
    echo "openai-codex-cli-bin==$codex" > "$dir/codex.pin"
    echo "codex: $("$dir/codex/bin/codex" --version) from openai-codex-cli-bin==$codex into $dir"
fi
