#!/usr/bin/env bash
# A backlog of N pending deliveries for a dead destination: Fanout's peak RSS while it
# holds them, and the drain rate once the destination comes back.
#   bench/backlog.sh            # N=1000000 (takes several minutes)
#   N=100000 bench/backlog.sh
# Needs Go and curl (as root, a missing curl is installed with apt-get). The sink is the
# side-by-side harness's (bench/peers/sink; PEERS_DIR runs another copy's).
# Everything listens on 127.0.0.1; it stops only what it started. The queue of N
# callbacks is removed at the end (KEEP=1 keeps it, with the logs, in the work folder).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-1000000}
KEEP=${KEEP:-0}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-3600} # seconds the drain may take before the script gives up
peers=${PEERS_DIR:-$root/bench/peers}
if ! command -v curl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
  else
    echo "backlog.sh needs curl (apt-get install curl)" >&2; exit 1
  fi
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/fanout-backlog.XXXXXX")
echo "work folder: $work"
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
  max_backlog: 100000000       # above N: the whole backlog is kept, none is refused
  retry: {max_attempts: 1000, max_age: 24h, backoff: {initial: 1s, max: 10s}}
destinations:
  dead: {url: "http://127.0.0.1:18191/a"}
routes:
  - {name: all, to: [dead]}
CFG
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "$KEEP" = 1 ] || rm -rf "$work/data"
}
trap cleanup EXIT
# seconds between two date +%s.%N readings, and a rate, without bc
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%d", n / (b - a) }'; }
"$work/fanout" serve --config "$work/config.yaml" --log-level error > "$work/fanout.log" 2>&1 & fpid=$!; pids+=($fpid)
for _ in $(seq 50); do curl -fsS 127.0.0.1:18195/readyz >/dev/null 2>&1 && break; sleep 0.2; done
echo "== filling: $N callbacks for a destination that is down"
"$work/load" -url 'http://127.0.0.1:18180/callback?SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json' -n "$N" -c 32
pending() { curl -s 127.0.0.1:18195/metrics | awk '/^fanout_queue_pending\{destination="dead"\}/ {printf "%d\n", $2}'; }
p0=$(pending); p0=${p0:-0}
echo "pending: $p0"
echo "peak RSS while filling: $(awk '/VmHWM/ {print $2, $3}' /proc/$fpid/status)"
echo "RSS now: $(awk '/VmRSS/ {print $2, $3}' /proc/$fpid/status)"
echo "== the destination comes back"
"$work/sink" -addr 127.0.0.1:18191 -name A > "$work/sink.log" 2>&1 & pids+=($!)
# Measured from the pending count after filling, not N: callbacks the load could not
# store are not in the backlog.
start=$(date +%s.%N); first=""
while :; do
  p=$(pending); p=${p:-0}
  if [ -z "$first" ] && [ "$p" -lt "$p0" ]; then first=$(date +%s.%N); echo "first delivery after $(secs "$start" "$first") s (pause probe)"; fi
  [ "$p" = 0 ] && break
  if [ "$(secs "$start" "$(date +%s.%N)" | cut -d. -f1)" -ge "$DRAIN_TIMEOUT" ]; then
    echo "gave up after ${DRAIN_TIMEOUT}s with $p pending" >&2; exit 1
  fi
  sleep 1
done
end=$(date +%s.%N)
echo "drained $p0 in $(secs "${first:-$start}" "$end") s: $(rate "$p0" "${first:-$start}" "$end") deliveries/s"
echo "peak RSS overall: $(awk '/VmHWM/ {print $2, $3}' /proc/$fpid/status)"
echo "dead letters: $(curl -s 127.0.0.1:18195/metrics | awk '/^fanout_dead_letters\{destination="dead"\}/ {printf "%d", $2}')"
curl -s 127.0.0.1:18191/count; echo
