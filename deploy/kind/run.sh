#!/usr/bin/env bash
# End-to-end load test of changeprop on a local kind cluster:
#
#   deploy/kind/run.sh            create the cluster (or reuse it), build and load the
#                                 image, install Kafka, Redis, the job-runner simulator
#                                 and changeprop (Helm chart), run the load generator,
#                                 wait for changeprop to drain, print jobs/s and delay
#   CLEANUP=1 deploy/kind/run.sh  the same, then delete the cluster
#
# Needs docker, kind, kubectl, helm and curl. Knobs (environment):
#   CLUSTER=changeprop NAMESPACE=changeprop IMAGE=changeprop:kind
#   DRAIN_TIMEOUT=600 (seconds to wait for the jobs to be done after the load)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cluster="${CLUSTER:-changeprop}"
ns="${NAMESPACE:-changeprop}"
image="${IMAGE:-changeprop:kind}"
drain_timeout="${DRAIN_TIMEOUT:-600}"
release="cp"
cp_local_port=17200
sim_local_port=19005

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl helm curl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  if [[ "${CLEANUP:-0}" == 1 ]]; then
    kind delete cluster --name "$cluster" || true
  fi
}
trap cleanup EXIT

log "cluster $cluster"
if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --config "$here/cluster.yaml" --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null

log "image $image"
docker build -t "$image" "$root"
kind load docker-image "$image" --name "$cluster"

log "Kafka, Redis and the job-runner simulator in namespace $ns"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" apply -f "$here/kafka.yaml" -f "$here/redis.yaml" -f "$here/jobrunner.yaml"
for d in kafka redis jobrunner; do
  kubectl -n "$ns" rollout status "deployment/$d" --timeout=300s
done

log "changeprop (helm release $release)"
helm upgrade --install "$release" "$root/deploy/helm/changeprop" -n "$ns" \
  -f "$here/values-kind.yaml" \
  --set image.repository="${image%%:*}" --set image.tag="${image##*:}" \
  --wait --timeout 5m

# Port-forwards to changeprop's listener and the simulator's stats.
kubectl -n "$ns" port-forward "svc/$release-changeprop" "$cp_local_port:7200" >/dev/null 2>&1 &
pids+=("$!")
kubectl -n "$ns" port-forward svc/jobrunner "$sim_local_port:9005" >/dev/null 2>&1 &
pids+=("$!")
for _ in $(seq 1 30); do
  if curl -fsS "http://127.0.0.1:$cp_local_port/readyz" >/dev/null 2>&1 &&
     curl -fsS "http://127.0.0.1:$sim_local_port/_sim/stats?percentiles=false" >/dev/null 2>&1; then
    break
  fi
  sleep 1
done
curl -fsS "http://127.0.0.1:$cp_local_port/readyz" >/dev/null || die "changeprop is not ready"
curl -fsS -X POST "http://127.0.0.1:$sim_local_port/_sim/reset" >/dev/null

log "load: changeprop loadgen (deploy/kind/loadtest.yaml)"
kubectl -n "$ns" delete job loadgen --ignore-not-found --wait=true
start=$(date +%s)
kubectl -n "$ns" apply -f "$here/loadtest.yaml"
kubectl -n "$ns" wait --for=condition=complete job/loadgen --timeout=600s ||
  { kubectl -n "$ns" logs job/loadgen --tail=50 >&2; die "the load generator did not complete"; }
kubectl -n "$ns" logs job/loadgen | tail -n 3
produced=$(kubectl -n "$ns" logs job/loadgen | sed -n 's/^loadgen: produced \([0-9]*\) events.*/\1/p' | tail -n 1)
[[ -n "$produced" ]] || die "cannot read the produced count from the load generator's log"

# sum_metric NAME: the sum of a metric's series on changeprop's /metrics.
sum_metric() {
  curl -fsS "http://127.0.0.1:$cp_local_port/metrics" |
    awk -v m="$1" '$1 ~ "^"m"({|$)" { s += $2 } END { printf "%d\n", s }'
}
# sim_field NAME: a top-level number of the simulator's /_sim/stats, read
# without the latency percentiles, which cost the simulator CPU.
sim_field() {
  curl -fsS "http://127.0.0.1:$sim_local_port/_sim/stats?percentiles=false" |
    tr ',{}' '\n' | sed -n "s/^ *\"$1\": *\([0-9]*\).*/\1/p" | head -n 1
}

log "waiting for changeprop to drain: lag and in-flight 0 twice in a row (up to ${drain_timeout}s)"
# Jobs the dedupe store drops never reach the job runner, so the count of
# jobs run is reported, not waited for.
deadline=$(( $(date +%s) + drain_timeout ))
idle=0
while :; do
  lag=$(sum_metric changeprop_partition_lag)
  inflight=$(sum_metric changeprop_inflight)
  printf '  jobs run %s of %s produced, lag %s, in flight %s\n' "$(sim_field total)" "$produced" "$lag" "$inflight" >&2
  if (( lag == 0 && inflight == 0 )); then
    idle=$(( idle + 1 ))
    (( idle < 2 )) || break
  else
    idle=0
  fi
  (( $(date +%s) < deadline )) || { echo "run.sh: not drained after ${drain_timeout}s" >&2; break; }
  sleep 5
done
end=$(date +%s)

log "results"
stats=$(curl -fsS "http://127.0.0.1:$sim_local_port/_sim/stats")
total=$(sim_field total)
elapsed=$(( end - start ))
ns_to_ms() { awk -v n="${1:-0}" 'BEGIN { printf "%.1f", n / 1e6 }'; }
added() { printf '%s' "$stats" | tr ',{}' '\n' | sed -n "s/^ *\"$1\": *\([0-9]*\).*/\1/p" | tail -n 1; }
printf 'produced            %s events\n' "$produced"
printf 'jobs run            %s in %ss (load + drain): %s jobs/s\n' "$total" "$elapsed" \
  "$(awk -v t="${total:-0}" -v s="$elapsed" 'BEGIN { printf "%.0f", t / (s > 0 ? s : 1) }')"
printf 'delay (receipt at the job runner - meta.dt): p50 %s ms  p90 %s ms  p99 %s ms  max %s ms\n' \
  "$(ns_to_ms "$(added p50_ns)")" "$(ns_to_ms "$(added p90_ns)")" "$(ns_to_ms "$(added p99_ns)")" "$(ns_to_ms "$(added max_ns)")"
printf 'changeprop outcomes:\n'
curl -fsS "http://127.0.0.1:$cp_local_port/metrics" |
  awk '/^changeprop_dispatch_total\{/ { match($0, /outcome="[^"]*"/); o = substr($0, RSTART + 9, RLENGTH - 10); s[o] += $2 }
       END { for (o in s) if (s[o] > 0) printf "  %-12s %d\n", o, s[o] }'
printf 'full simulator stats: curl http://127.0.0.1:%s/_sim/stats (while this script runs) or\n' "$sim_local_port"
printf '  kubectl -n %s port-forward svc/jobrunner 9005 & curl localhost:9005/_sim/stats\n' "$ns"
