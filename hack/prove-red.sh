#!/usr/bin/env bash
# Proves that the suites guarding each protection can fail: for every patch in hack/prove-red/
# (each removes one protection), applies it to this checkout, runs the test hack/prove-red/TESTS
# names for it, reverts the patch, and prints whether the test went red. Exits non-zero when a
# test stayed green without its protection, or the checkout already differs in a patched file.
#
# usage: hack/prove-red.sh [PATCH...]      (default: every patch listed in hack/prove-red/TESTS)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}"
export CARGO_TERM_COLOR=never

declare -A tests
while read -r name args; do
    [[ -z $name || $name == \#* ]] && continue
    tests[$name]=$args
done < hack/prove-red/TESTS
if (($# == 0)); then
    set -- $(grep -v '^#' hack/prove-red/TESTS | awk 'NF {print $1}')
fi

applied=""
revert() { [[ -n $applied ]] && git apply -R "hack/prove-red/$applied.patch"; applied=""; }
# Suites run the workspace's binaries (bbctl, bb-sidecar) from the target directory: each run
# builds them with the patch, and the exit rebuilds them without, so no sabotaged binary is
# left for the next test run.
restore() {
    revert
    cargo build -q --workspace --bins || echo "warning: rebuilding the binaries without patches failed" >&2
}
trap restore EXIT

log=$(mktemp -d)
green=0
printf '%-24s %-6s %s\n' PATCH RESULT TEST
for name in "$@"; do
    patch="hack/prove-red/$name.patch"
    args=${tests[$name]:-}
    if [[ ! -f $patch || -z $args ]]; then
        echo "error: $name: no $patch or no entry in hack/prove-red/TESTS" >&2
        exit 2
    fi
    # Never stack a removal on local edits to the same files (reverting could lose them).
    if ! git diff --quiet -- $(git apply --numstat "$patch" | cut -f3); then
        echo "error: $name: the checkout has changes in the files the patch touches" >&2
        exit 2
    fi
    git apply "$patch"
    applied=$name
    # shellcheck disable=SC2086 # args is a list of words
    if ! cargo build -q --workspace --bins >"$log/$name.log" 2>&1; then
        result=BROKEN
        green=$((green + 1))
    elif cargo test $args >>"$log/$name.log" 2>&1; then
        result=GREEN
        green=$((green + 1))
    elif grep -q '^test result: FAILED' "$log/$name.log"; then
        result=red
    else
        # A build failure is not a proof: the patch no longer fits the code.
        result=BROKEN
        green=$((green + 1))
    fi
    revert
    printf '%-24s %-6s cargo test %s\n' "$name" "$result" "$args"
done
echo "logs: $log"
if ((green > 0)); then
    echo "$green protection(s) removed without a failing test (GREEN) or patch(es) that no longer apply (BROKEN)" >&2
    exit 1
fi
