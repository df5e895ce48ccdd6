#!/usr/bin/env bash
# Fanout in the side-by-side peers harness (a checkout of it in $PEERS_DIR): limit-sync, limit-async,
# Benthos and Fanout, one at a time, same workload, one table. Run from anywhere:
#   bench/peers.sh                              # default rounds and systems
#   ROUNDS=1 DURATION=10 bench/peers.sh         # quicker
#   SINK_FAIL_RATIO=0.1 bench/peers.sh          # sinks answer 503 to 10%: retries, lost, dups
#   FANOUT_BENCH_SYNC=always bench/peers.sh     # fsync every callback before answering
# Any knob of the harness (see its README) passes through.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_DIR:?set PEERS_DIR to a checkout of the peers harness}
bin=${FANOUT_BENCH_BIN:-${TMPDIR:-/tmp}/fanout-bench/fanout}
cd "$root"
export GATEWAY_NAME=${GATEWAY_NAME:-fanout}
export GATEWAY_BUILD="go build -o $bin ./cmd/fanout"
export GATEWAY_CMD="$bin serve --config {{CONFIG}} --log-level warn"
export GATEWAY_CONFIG=bench/fanout.yaml.tmpl
export SYSTEMS=${SYSTEMS:-limit-sync limit-async benthos}
exec "$peers/run.sh"
