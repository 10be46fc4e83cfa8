#!/usr/bin/env bash
# git-gate's measures, printed as a table: the push scanner beside detect-secrets (PyPI) on the
# same clean corpus of real code and the same planted secrets (findings, recall, MB/s), the
# scanner's throughput on a generated `git log -p` history of at least 200 MB, and push latency
# through the gate vs a direct push to the same bare repository.
#
#   hack/bench-git-gate.sh [CORPUS_DIR]   (default: text files of ~/.cargo/registry/src, ~40 MB)
# env: BB_BENCH_CORPUS_MB (40), BB_BENCH_LOG_MB (200)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpus_mb=${BB_BENCH_CORPUS_MB:-40}
log_mb=${BB_BENCH_LOG_MB:-200}

# The clean corpus: a fixed selection of real source files, so both tools read the same bytes.
corpus=$work/corpus
mkdir -p "$corpus"
src=${1:-$HOME/.cargo/registry/src}
python3 "$(dirname "$0")/corpus.py" "$src" "$corpus" "$corpus_mb"

# Planted secrets: ten fresh ones per family, one per line, in the context code puts them in.
planted=$work/planted
mkdir -p "$planted"
python3 - "$planted" <<'PY'
import base64, json, random, string, sys
r = random.Random(7)
def s(n, alphabet=string.ascii_letters + string.digits):
    return ''.join(r.choice(alphabet) for _ in range(n))
up, hexd = string.ascii_uppercase + string.digits, '0123456789abcdef'
families = {
    'aws.env': lambda: 'AWS_ACCESS_KEY_ID=AKIA' + s(16, up),
    'github.yml': lambda: 'token: ghp_' + s(36),
    'gitlab.sh': lambda: 'export GITLAB_TOKEN=glpat-' + s(20),
    'slack.py': lambda: 'SLACK = "xoxb-' + s(12, string.digits) + '-' + s(24) + '"',
    'stripe.rb': lambda: 'Stripe.api_key = "sk_live_' + s(24) + '"',
    'openai.ts': lambda: 'const key = "sk-proj-' + s(48) + '";',
    'anthropic.env': lambda: 'ANTHROPIC_API_KEY=sk-ant-api03-' + s(90, string.ascii_letters + string.digits + '_-'),
    'google.js': lambda: 'apiKey: "AIza' + s(35, string.ascii_letters + string.digits + '_-') + '",',
    'jwt.txt': lambda: 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.' + base64.urlsafe_b64encode(json.dumps({'sub': s(10)}).encode()).decode().rstrip('=') + '.' + s(43, string.ascii_letters + string.digits + '_-'),
    'key.pem': lambda: '-----BEGIN RSA PRIVATE KEY-----',
    'settings.py': lambda: 'DB_PASSWORD = "' + s(20) + '"',
    'sendgrid.go': lambda: 'key := "SG.' + s(22) + '.' + s(43) + '"',
    'npmrc': lambda: '//registry.npmjs.org/:_authToken=npm_' + s(36),
}
for name, make in families.items():
    with open(f'{sys.argv[1]}/{name}', 'w') as f:
        for _ in range(10):
            f.write(make() + '\n')
PY

# bb-sidecar's scanner.
(cd "$root" && cargo build -q --release -p bb-sidecar)
ours=$(cd "$root" && cargo bench -q -p bb-sidecar --bench git_scan -- --corpus "$corpus" --planted "$planted" --log-mb "$log_mb" 2>/dev/null)
val() { awk -v k="$1" '$1 == k { print $2 }' <<<"$ours"; }

# detect-secrets from PyPI, installed once into the same cache the test suites use.
pypi=$HOME/.cache/bot-bottle/pypi
if ! PYTHONPATH=$pypi python3 -c 'import detect_secrets' 2>/dev/null; then
    python3 -m pip install --quiet --root-user-action=ignore --target "$pypi" detect-secrets >&2
fi
ds() { (cd "$1" && PYTHONPATH=$pypi python3 -m detect_secrets scan --all-files . ); }
t0=$(date +%s.%N)
ds "$corpus" > "$work/ds-corpus.json"
t1=$(date +%s.%N)
ds "$planted" > "$work/ds-planted.json"
# Lines flagged (a line two detectors flag counts once, as in ours).
lines() { python3 -c 'import json,sys; print(sum(len({f["line_number"] for f in v}) for v in json.load(open(sys.argv[1]))["results"].values()))' "$1"; }
ds_corpus=$(lines "$work/ds-corpus.json")
ds_planted=$(lines "$work/ds-planted.json")
ds_rate=$(python3 -c "print('%.1f' % ($(val corpus_mb) / ($t1 - $t0)))")

# Push latency: 1 MB through the gate vs straight to the same upstream, which is Debian's sshd
# in a container (tests/fixtures/git-upstream), as an agent's forge would be.
git() { command git -c user.name=bench -c user.email=b@bench.invalid "$@"; }
forge=bb-bench-git-forge
docker rm -f "$forge" >/dev/null 2>&1 || true
trap 'kill ${gate_pid:-0} 2>/dev/null || true; docker rm -f '"$forge"' >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
docker build -q -t bb-e2e/git-upstream:1 --build-arg "BASE=${BB_BASE_IMAGE:-bot-bottle/base:bookworm}" \
    "$root/tests/fixtures/git-upstream" >/dev/null
mkdir -p "$work/keys" "$work/gate"
ssh-keygen -q -t ed25519 -N "" -f "$work/keys/host_ed25519"
ssh-keygen -q -t ed25519 -N "" -f "$work/client"
cp "$work/client.pub" "$work/keys/authorized_keys"
docker create --name "$forge" --label bot-bottle.e2e=upstream bb-e2e/git-upstream:1 >/dev/null
docker cp "$work/keys/." "$forge:/keys/"
docker start "$forge" >/dev/null
ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$forge")
docker exec -u git "$forge" git init -q --bare -b main /home/git/app.git
host_key=$(cut -d' ' -f1,2 "$work/keys/host_ed25519.pub")
echo "$ip $host_key" > "$work/known_hosts"
export GIT_SSH_COMMAND="ssh -F /dev/null -i $work/client -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$work/known_hosts"
for _ in $(seq 50); do git ls-remote "git@$ip:app.git" >/dev/null 2>&1 && break; sleep 0.2; done
(cd "$work" && git init -q -b main seed && cd seed && echo seed > README && git add README && git commit -q -m seed \
    && git push -q "git@$ip:app.git" main)
cp "$work/client" "$work/gate/git-key-app"
chmod 600 "$work/gate/git-key-app"
printf 'repos:\n  app: {url: "git@%s:app.git", hostKey: "%s"}\n' "$ip" "$host_key" > "$work/gate.yaml"
"$target/release/bb-sidecar" git-gate --listen 127.0.0.1:0 --listen-file "$work/gate.addr" \
    --config "$work/gate.yaml" --state-dir "$work/gate-state" --secrets-dir "$work/gate" 2>/dev/null &
gate_pid=$!
for _ in $(seq 100); do [ -s "$work/gate.addr" ] && break; sleep 0.1; done
git clone -q "http://$(cat "$work/gate.addr")/app.git" "$work/via-gate"
git clone -q "git@$ip:app.git" "$work/direct"
push_ms() { # DIR: commit 1 MB of fresh random text, time the push
    (cd "$1" && git pull -q --rebase origin main && head -c 750000 /dev/urandom | base64 > "blob-$RANDOM" \
        && git add -A && git commit -q -m blob \
        && s=$(date +%s%N) && git push -q origin main && echo $(( ($(date +%s%N) - s) / 1000000 )))
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
gate_ms=$(for _ in 1 2 3 4 5; do push_ms "$work/via-gate"; done | median)
direct_ms=$(for _ in 1 2 3 4 5; do push_ms "$work/direct"; done | median)
ratio=$(python3 -c "print('%.2f' % ($gate_ms / $direct_ms))")

echo
echo "| measure | bb-sidecar git-gate | detect-secrets $(PYTHONPATH=$pypi python3 -c 'from detect_secrets.__version__ import VERSION; print(VERSION)' 2>/dev/null) |"
echo "|---|---|---|"
echo "| clean corpus: $(val corpus_files) files, $(val corpus_mb) MB of real code | $(val corpus_findings) lines flagged | $ds_corpus lines flagged |"
echo "| planted secrets found (13 families x 10) | $(val planted_found) / $(val planted) | $ds_planted / $(val planted) |"
echo "| scan rate on that corpus | $(val throughput_mb_s) MB/s on a $(val log_mb) MB git log -p | $ds_rate MB/s |"
echo "| the hook's object scan (every file a new blob: rules, known secrets, decoded views) | $(val blob_mb_s) MB/s, $(val blob_findings) lines flagged | - |"
echo "| 1 MB push to sshd, median of 5 | ${gate_ms} ms through the gate (${ratio}x) | ${direct_ms} ms direct |"
echo
echo "findings on the clean corpus by rule:"
awk '$1 == "corpus_rule" { print "  " $2 ": " $3 }' <<<"$ours"
awk '$1 == "missed" { $1 = "  missed:"; print }' <<<"$ours"
