#!/usr/bin/env bash
# A backlog of N pending deliveries for a dead destination: Fanout's peak RSS while it
# holds them, and the drain rate once the destination comes back.
#   bench/backlog.sh            # N=1000000 (takes several minutes)
#   N=100000 bench/backlog.sh
# Everything listens on 127.0.0.1; it stops only what it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-1000000}
work=$(mktemp -d "${TMPDIR:-/tmp}/fanout-backlog.XXXXXX")
peers=${PEERS_DIR:?set PEERS_DIR to a checkout of the peers harness (its sink is the destination)}
cd "$root"
go build -o "$work/fanout" ./cmd/fanout
go build -o "$work/load" ./bench/load
(cd "$peers" && go build -o "$work/sink" ./sink)
cat > "$work/config.yaml" <<CFG
server: {listen: "127.0.0.1:18180"}
admin: {listen: "127.0.0.1:18195"}
tencent: {apps: [{sdkappid: 1400000000}]}
queue: {dir: "$work/data"}
defaults:
  concurrency: 64
  retry: {max_attempts: 1000, max_age: 24h, backoff: {initial: 1s, max: 10s}}
destinations:
  dead: {url: "http://127.0.0.1:18191/a"}
routes:
  - {name: all, to: [dead]}
CFG
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
"$work/fanout" serve --config "$work/config.yaml" --log-level error > "$work/fanout.log" 2>&1 & fpid=$!; pids+=($fpid)
for _ in $(seq 50); do curl -fsS 127.0.0.1:18195/readyz >/dev/null 2>&1 && break; sleep 0.2; done
echo "== filling: $N callbacks for a destination that is down"
"$work/load" -url 'http://127.0.0.1:18180/callback?SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json' -n "$N" -c 32
pending() { curl -s 127.0.0.1:18195/metrics | awk '/^fanout_queue_pending\{destination="dead"\}/ {printf "%d\n", $2}'; }
echo "pending: $(pending)"
echo "peak RSS while filling: $(awk '/VmHWM/ {print $2, $3}' /proc/$fpid/status)"
echo "RSS now: $(awk '/VmRSS/ {print $2, $3}' /proc/$fpid/status)"
echo "== the destination comes back"
"$work/sink" -addr 127.0.0.1:18191 -name A > "$work/sink.log" 2>&1 & pids+=($!)
start=$(date +%s.%N); first=""
while :; do
  p=$(pending); [ -z "$p" ] && p=0
  if [ -z "$first" ] && [ "${p%.*}" -lt "$N" ]; then first=$(date +%s.%N); echo "first delivery after $(echo "$first - $start" | bc) s (pause probe)"; fi
  [ "${p%.*}" = "0" ] && break
  sleep 1
done
end=$(date +%s.%N)
echo "drained $N in $(echo "$end - $first" | bc) s: $(echo "$N / ($end - $first)" | bc) deliveries/s"
echo "peak RSS overall: $(awk '/VmHWM/ {print $2, $3}' /proc/$fpid/status)"
curl -s 127.0.0.1:18191/count; echo
