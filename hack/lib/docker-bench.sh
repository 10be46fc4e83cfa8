# Sourced by the Docker benchmarks (hack/bench-docker.sh, hack/bench-lifecycle.sh): builds the
# binaries and the registry-free base, starts a local control plane on a fresh home with the
# Docker backend, applies the Bottle `bench` (the test-agent image), and removes everything on
# exit. Defines `now` (epoch seconds, nanosecond precision) and `agent NAME` (an Agent's YAML).
#
# needs: BENCH_LABEL (containers the bench starts itself carry bot-bottle.e2e=$BENCH_LABEL)
# sets:  bin (the binaries' directory), home, port, profile, KUBECONFIG
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bot-bottle/target}"
profile="${PROFILE:-debug}"
[[ $profile == debug || $profile == release ]] || { echo "error: PROFILE must be debug or release, not '$profile'" >&2; exit 2; }
flag=(); [[ $profile == release ]] && flag=(--release)
cargo build -q "${flag[@]}" -p bbctl -p bb-sidecar
bin="$CARGO_TARGET_DIR/$profile"
hack/build-base-image.sh >/dev/null

home="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/bbctl" controller run --home "$home" --listen "127.0.0.1:$port" --backend docker \
    --base-image bot-bottle/base:bookworm --sidecar-binary "$bin/bb-sidecar" \
    --resync-seconds 30 2>"$home/controller.log" &
ctl=$!
cleanup() {
    kubectl delete agents --all --wait >/dev/null 2>&1 || true
    kill "$ctl" 2>/dev/null || true
    wait "$ctl" 2>/dev/null || true
    docker ps -aq --filter "label=bot-bottle.e2e=$BENCH_LABEL" | xargs -r docker rm -f >/dev/null
    rm -rf "$home"
}
trap cleanup EXIT
export KUBECONFIG="$home/kubeconfig"
for _ in $(seq 100); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.1; done

now() { date +%s.%N; }
agent() {
    cat <<YAML
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {name: $1, namespace: default}
spec: {bottleRef: {name: bench}}
YAML
}
kubectl apply -f - >/dev/null <<YAML
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {name: bench}
spec:
  agentProvider: {template: custom, dockerfile: $PWD/images/test-agent/Dockerfile, command: [bash]}
  egress: {routes: [{host: api.example.test}]}
YAML
