#!/usr/bin/env bash
# Smoke test of the image `make docker` builds, run the way the Helm chart
# runs it: user 65532, read-only root filesystem, no capabilities.
#
#   deploy/docker/smoke.sh [image]      # default changeprop:dev
#
# 1. `changeprop dev -jobs 2000` inside the image (its embedded cluster and
#    job runner): every job done, none on the error topic.
# 2. The image's own entrypoint (`changeprop run`) with a config mounted at
#    /etc/changeprop/config.yaml, against a Kafka-protocol cluster and a
#    job runner on the host (host network): 3,000 generated jobs answered,
#    /readyz ready, then `docker stop` (SIGTERM) exits 0.
#
# Needs docker and go (for the host's cluster, job runner and generator).
set -euo pipefail

image=${1:-changeprop:dev}
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
container=changeprop-smoke-$$
pids=()
cleanup() {
	docker rm -f "$container" >/dev/null 2>&1 || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
locked=(--read-only --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges)

echo "smoke: 1. changeprop dev -jobs 2000 in $image"
docker run --rm "${locked[@]}" --entrypoint /usr/local/bin/changeprop "$image" \
	dev -jobs 2000 -listen 127.0.0.1:0 >"$work/dev.log" 2>&1 || { cat "$work/dev.log"; fail "dev exited with an error"; }
summary=$(grep '^summary:' "$work/dev.log") || { cat "$work/dev.log"; fail "dev printed no summary"; }
echo "smoke:    $summary"
[[ $summary == *"2000 jobs done"* && $summary == *" 0 on the error topic"* ]] || fail "dev: want 2000 jobs done, none on the error topic"

echo "smoke: 2. changeprop run (the image's entrypoint) with a mounted config"
go build -o "$work/" ./bench/cluster ./cmd/changeprop
topics=mediawiki.job.refreshLinks,mediawiki.job.htmlCacheUpdate,mediawiki.job.cdnPurge
# The cluster exits when its standard input closes: this script holds it
# open (fd 3) until it exits.
mkfifo "$work/hold"
"$work/cluster" -brokers 1 -partitions 4 -topics "$topics" <"$work/hold" >"$work/cluster.log" 2>&1 &
pids+=($!)
exec 3>"$work/hold"
"$work/changeprop" jobrunner-sim -listen 127.0.0.1:0 -latency 0 >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	[[ -s $work/cluster.log ]] && grep -q 'listening on' "$work/sim.log" && break
	sleep 0.1
done
brokers=$(head -1 "$work/cluster.log")
runner=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/sim.log" | head -1)
[[ -n $brokers && -n $runner ]] || fail "cluster or job runner did not start"
port=$((20000 + $$ % 20000))
mkdir "$work/etc"
sed -e "s#127.0.0.1:9092#$brokers#" -e "s#http://jobrunner.svc:9005#$runner#" \
	-e "s#listen: 127.0.0.1:7200#listen: 127.0.0.1:$port#" deploy/examples/jobqueue.yaml >"$work/etc/config.yaml"
chmod -R a+rX "$work/etc"
docker run -d --name "$container" --network host "${locked[@]}" \
	-v "$work/etc:/etc/changeprop:ro" "$image" >/dev/null
"$work/changeprop" loadgen -brokers "$brokers" -rate 0 -n 3000 -delay-rate 0 -unique \
	-topics refreshLinks,htmlCacheUpdate,cdnPurge >"$work/loadgen.log" 2>&1 || { cat "$work/loadgen.log"; fail "loadgen"; }
answered=0
for _ in $(seq 300); do
	answered=$(curl -fsS "$runner/_sim/stats" | grep -o '"total":[0-9]*' | head -1 | cut -d: -f2)
	[[ ${answered:-0} -ge 3000 ]] && break
	sleep 0.1
done
echo "smoke:    job runner answered ${answered:-0} of 3000 requests"
[[ ${answered:-0} -ge 3000 ]] || { docker logs "$container" 2>&1 | tail -20; fail "not every job was answered"; }
ready=$(curl -sS "127.0.0.1:$port/readyz")
[[ $ready == ready* ]] || fail "/readyz: $ready"
docker stop "$container" >/dev/null
code=$(docker inspect "$container" --format '{{.State.ExitCode}}')
echo "smoke:    docker stop: exit code $code; last log line: $(docker logs "$container" 2>&1 | tail -1)"
[[ $code == 0 ]] || fail "exit code $code after SIGTERM"
echo "smoke: ok"
