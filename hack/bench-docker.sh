#!/usr/bin/env bash
# Benchmark: Agent apply -> Running and delete -> gone on the Docker backend (images already
# built), next to a bare `docker run -d` / `docker rm -f` of the same agent image. Prints a table.
#
# usage: hack/bench-docker.sh [ITERATIONS]      (default 5)
# env:   CARGO_TARGET_DIR (default $HOME/.cache/bot-bottle/target), PROFILE (debug|release)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-5}"
BENCH_LABEL=bench
# shellcheck source=hack/lib/docker-bench.sh
source hack/lib/docker-bench.sh

# Warm-up: builds the sidecar and agent images once.
agent warm | kubectl apply -f - >/dev/null
kubectl wait --for=jsonpath='{.status.phase}'=Running agent/warm --timeout=600s >/dev/null
image=$(docker ps --filter label=bot-bottle.dev/agent=default/warm --filter label=bot-bottle.dev/role=agent --format '{{.Image}}')
kubectl delete agent warm --wait >/dev/null

# The same create through the API with curl (no kubectl start-up in the measurement).
apiurl="https://127.0.0.1:$port/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents"
curl_api() { curl -sS --cacert "$home/ca.crt" -H "Authorization: Bearer $(cat "$home/token")" "$@"; }
api_ready() {
    local name=$1 t0 t1
    t0=$(now)
    curl_api -o /dev/null -H 'Content-Type: application/json' -X POST "$apiurl" \
        -d "{\"apiVersion\":\"bot-bottle.dev/v1alpha1\",\"kind\":\"Agent\",\"metadata\":{\"name\":\"$name\"},\"spec\":{\"bottleRef\":{\"name\":\"bench\"}}}"
    until curl_api "$apiurl/$name" | grep -q '"phase":"Running"'; do sleep 0.02; done
    t1=$(now)
    echo "$t1 - $t0" | bc
}

ready=(); gone=(); run=(); rm=(); api=()
for i in $(seq "$n"); do
    t0=$(now)
    agent "bench-$i" | kubectl apply -f - >/dev/null
    kubectl wait --for=jsonpath='{.status.phase}'=Running "agent/bench-$i" --timeout=120s >/dev/null
    t1=$(now)
    kubectl delete agent "bench-$i" --wait >/dev/null
    t2=$(now)
    ready+=("$(echo "$t1 - $t0" | bc)"); gone+=("$(echo "$t2 - $t1" | bc)")

    t0=$(now)
    docker run -d --label bot-bottle.e2e=bench --name "bb-bench-bare-$i" "$image" sleep infinity >/dev/null
    t1=$(now)
    docker rm -f "bb-bench-bare-$i" >/dev/null
    t2=$(now)
    run+=("$(echo "$t1 - $t0" | bc)"); rm+=("$(echo "$t2 - $t1" | bc)")

    api+=("$(api_ready "api-$i")")
    kubectl delete agent "api-$i" --wait >/dev/null
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
r=$(median "${ready[@]}"); g=$(median "${gone[@]}"); dr=$(median "${run[@]}"); dm=$(median "${rm[@]}")
a=$(median "${api[@]}")
printf '\n%-40s %12s\n' "median of $n ($profile build)" "seconds"
printf '%-40s %12.2f\n' "bbctl/kubectl apply -> Running" "$r"
printf '%-40s %12.2f\n' "API create (curl) -> Running" "$a"
printf '%-40s %12.2f\n' "kubectl delete -> everything gone" "$g"
printf '%-40s %12.2f\n' "bare docker run -d (same image)" "$dr"
printf '%-40s %12.2f\n' "bare docker rm -f" "$dm"
printf '%-40s %12.1fx   (target <= 3x)\n' "kubectl Ready / bare docker run" "$(echo "$r / $dr" | bc -l)"
printf '%-40s %12.1fx   (target <= 3x)\n' "API Ready / bare docker run" "$(echo "$a / $dr" | bc -l)"
