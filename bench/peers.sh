#!/usr/bin/env bash
# Fanout in the side-by-side harness (bench/peers/run.sh): limit-sync, limit-async,
# Benthos and Fanout, one at a time, same workload, one table. Run from anywhere:
#   bench/peers.sh                              # default rounds and systems
#   ROUNDS=1 DURATION=10 bench/peers.sh         # quicker
#   SINK_FAIL_RATIO=0.1 bench/peers.sh          # sinks answer 503 to 10%: retries, lost, dups
#   FANOUT_BENCH_SYNC=always bench/peers.sh     # fsync every callback before answering
#   FANOUT_BENCH_LOG=true bench/peers.sh        # with the event log on (off by default)
#   SYSTEMS=limit-async bench/peers.sh          # Fanout against limit-async only
# Any knob of the harness passes through (docs/performance.md lists them); PEERS_DIR
# runs another copy of the harness.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_DIR:-$root/bench/peers}
bin=${FANOUT_BENCH_BIN:-${TMPDIR:-/tmp}/fanout-bench/fanout}
# The template reads FANOUT_BENCH_SYNC and FANOUT_BENCH_LOG itself; they are also set on
# the command line so that the run's env.txt and cmd.txt say what was measured.
sync=${FANOUT_BENCH_SYNC:-1s}
eventlog=${FANOUT_BENCH_LOG:-false}
cd "$root"
export GATEWAY_NAME=${GATEWAY_NAME:-fanout}
export GATEWAY_BUILD="go build -o $(printf %q "$bin") ./cmd/fanout"
export GATEWAY_CMD="env FANOUT_BENCH_SYNC=$(printf %q "$sync") FANOUT_BENCH_LOG=$(printf %q "$eventlog") $(printf %q "$bin") serve --config {{CONFIG}} --log-level warn"
export GATEWAY_CONFIG=bench/fanout.yaml.tmpl
export SYSTEMS=${SYSTEMS:-limit-sync limit-async benthos}
exec "$peers/run.sh"
