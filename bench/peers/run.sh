#!/usr/bin/env bash
# run.sh - side-by-side performance harness for webhook fan-out relays.
#
# Builds the sink and the 'limit' relays (and Benthos), then, one system
# at a time, starts two sinks + the system, warms it up, loads it with wrk,
# checks that every accepted callback reached both sinks, records peak RSS and
# CPU, stops what it started (by PID) and prints one summary table.
# Everything listens on 127.0.0.1 only; every load is bounded by wrk -d.
# Needs Go, wrk, jq, curl and ss; as root it installs the missing ones from
# Debian's packages (apt-get). Benthos is built from its Go module.
# bench/peers.sh runs it with Fanout as the gateway row; docs/performance.md
# explains the knobs, the columns and the GATEWAY_* variables.
set -uo pipefail
shopt -u patsub_replacement 2>/dev/null || true # literal '&' in ${s//x/y}

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CALLER_DIR="$PWD"
cd "$HERE" || exit 1

# ---------------------------------------------------------------- knobs
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-20}         # measured seconds per system
WARMUP=${WARMUP:-5}              # warm-up seconds per system (not measured)
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WRK_TIMEOUT=${WRK_TIMEOUT:-5}    # wrk per-request timeout, seconds
BODY_MODE=${BODY_MODE:-unique}   # unique | static (see wrk/post.lua)
SYS_PORT=${SYS_PORT:-18080}
SINK_A_PORT=${SINK_A_PORT:-18091}
SINK_B_PORT=${SINK_B_PORT:-18092}
ADMIN_PORT=${ADMIN_PORT:-18095}  # a spare port a system may use (Benthos admin)
SINK_FAIL_RATIO=${SINK_FAIL_RATIO:-0}
SINK_LATENCY=${SINK_LATENCY:-0s}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-60}
READY_TIMEOUT=${READY_TIMEOUT:-30}
SETTLE=${SETTLE:-2}              # idle seconds between systems
BENTHOS_VERSION=${BENTHOS_VERSION:-v4.60.0}
BENTHOS_BIN=${BENTHOS_BIN:-}
INSTALL_DEPS=${INSTALL_DEPS:-1}
SYSTEMS=${SYSTEMS:-limit-sync limit-async benthos}
GATEWAY_NAME=${GATEWAY_NAME:-gateway}
GATEWAY_CMD=${GATEWAY_CMD:-}
GATEWAY_CONFIG=${GATEWAY_CONFIG:-}
GATEWAY_BUILD=${GATEWAY_BUILD:-}
GATEWAY_ANSWER_CHECK=${GATEWAY_ANSWER_CHECK:-1} # 0: any 2xx is 'accepted' (no OK-JSON check)
GATEWAY_STATS_URL=${GATEWAY_STATS_URL:-}       # optional: saved as relay-stats.json after the load
# Build output and results go under BENCH_WORK, outside the repository.
BENCH_WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/peers-bench}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_WORK/results/$(date -u +%Y%m%dT%H%M%SZ)}

if [[ -n "$GATEWAY_CMD" && " $SYSTEMS " != *" $GATEWAY_NAME "* ]]; then
  SYSTEMS="$SYSTEMS $GATEWAY_NAME"
fi

QUERY='SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json&ClientIP=127.0.0.1&OptPlatform=iOS'
SYS_URL="http://127.0.0.1:${SYS_PORT}/callback?${QUERY}"
SINK_A_URL="http://127.0.0.1:${SINK_A_PORT}/a"
SINK_B_URL="http://127.0.0.1:${SINK_B_PORT}/b"
SAMPLE="$HERE/wrk/sample-callback.json"
BIN="$BENCH_WORK/bin"
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ------------------------------------------------------------ processes
declare -a STARTED=()
LAST_PID=

# start_bg LOG CMDSTRING: runs CMDSTRING (one command; it is exec'd, so the
# recorded PID is the program itself) from the caller's directory.
start_bg() {
  local logf=$1; shift
  ( cd "$CALLER_DIR" && exec bash -c "exec $*" ) >"$logf" 2>&1 &
  LAST_PID=$!
  STARTED+=("$LAST_PID")
}

stop_pid() {
  local pid=$1 i
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  # forget it, so cleanup never signals a PID that may have been reused
  local keep=() x
  for x in "${STARTED[@]}"; do [[ "$x" == "$pid" ]] || keep+=("$x"); done
  STARTED=("${keep[@]}")
  return 0
}

cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

cpu_ticks() { # utime+stime of PID, in clock ticks
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $(( ${12} + ${13} ))
}

peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

render() { # substitute the {{...}} placeholders of a template string
  local s=$1
  s=${s//'{{PORT}}'/$SYS_PORT}
  s=${s//'{{ADMIN_PORT}}'/$ADMIN_PORT}
  s=${s//'{{SINK_A_URL}}'/$SINK_A_URL}
  s=${s//'{{SINK_B_URL}}'/$SINK_B_URL}
  s=${s//'{{DATA_DIR}}'/${DATA_DIR:-}}
  s=${s//'{{CONFIG}}'/${CONFIG_PATH:-}}
  printf '%s' "$s"
}

abs_from_caller() { [[ "$1" = /* ]] && printf '%s' "$1" || printf '%s' "$CALLER_DIR/$1"; }

# -------------------------------------------------------------- prereqs
need=()
for t in wrk jq curl ss; do command -v "$t" >/dev/null || need+=("$t"); done
if ((${#need[@]})); then
  pkgs=(); for t in "${need[@]}"; do case $t in ss) pkgs+=(iproute2) ;; *) pkgs+=("$t") ;; esac; done
  if [[ "$INSTALL_DEPS" = 1 && $(id -u) = 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${pkgs[*]} with apt-get"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null ||
      die "apt-get install ${pkgs[*]} failed"
  else
    die "missing tools: ${need[*]} (apt-get install ${pkgs[*]})"
  fi
fi
command -v go >/dev/null || die "go not found in PATH"

mkdir -p "$RESULTS_DIR" "$BIN" || die "cannot create $RESULTS_DIR"
RESULTS_DIR="$(cd "$RESULTS_DIR" && pwd)"
log "results -> ${RESULTS_DIR#"$HERE"/}"

# ---------------------------------------------------------------- build
log "building sink and limit"
go build -o "$BIN/" ./sink ./limit || die "go build failed"

declare -A SKIP_REASON=()
BENTHOS_NOTE=""

build_benthos() {
  local blog="$RESULTS_DIR/benthos-build.log" src="$BIN/benthos-src"
  if [[ -n "$BENTHOS_BIN" ]]; then
    BENTHOS_BIN=$(abs_from_caller "$BENTHOS_BIN")
    [[ -x "$BENTHOS_BIN" ]] || { SKIP_REASON[benthos]="BENTHOS_BIN not executable"; return; }
    BENTHOS_NOTE="benthos: given binary ($("$BENTHOS_BIN" --version 2>/dev/null | head -1))"
    return
  fi
  if [[ -x "$BIN/benthos" ]] && "$BIN/benthos" --version 2>/dev/null | grep -q "$BENTHOS_VERSION"; then
    BENTHOS_BIN="$BIN/benthos"; BENTHOS_NOTE="benthos: cached bin/benthos $BENTHOS_VERSION"; return
  fi
  log "building Benthos core $BENTHOS_VERSION (MIT, github.com/redpanda-data/benthos/v4) - first time takes a minute"
  : >"$blog"
  # The pinned version through a throw-away wrapper module: go install pkg@version
  # needs the module's version list, which some proxies do not serve. A table
  # names the version it measured, so there is no fallback to @latest.
  rm -rf "$src" && mkdir -p "$src"
  if (
    cd "$src" && export GOWORK=off &&
      go mod init benthosbuild &&
      go get "github.com/redpanda-data/benthos/v4@$BENTHOS_VERSION" &&
      cat >main.go <<'EOF' &&
// Wrapper that builds the Benthos core CLI with its bundled MIT components.
package main

import (
	"context"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure/extended"
	"github.com/redpanda-data/benthos/v4/public/service"
)

func main() { service.RunCLI(context.Background()) }
EOF
      go mod tidy &&
      go build -o "$BIN/benthos" .
  ) >>"$blog" 2>&1; then
    BENTHOS_BIN="$BIN/benthos"; BENTHOS_NOTE="benthos: built github.com/redpanda-data/benthos/v4 $BENTHOS_VERSION"
    return
  fi
  SKIP_REASON[benthos]="Benthos $BENTHOS_VERSION could not be built (see benthos-build.log)"
  BENTHOS_NOTE="benthos: SKIPPED, build/install failed"
}

if [[ " $SYSTEMS " == *" benthos "* ]]; then build_benthos; fi
[[ -n "$BENTHOS_NOTE" ]] && log "$BENTHOS_NOTE"

if [[ -n "$GATEWAY_CMD" && -n "$GATEWAY_BUILD" ]]; then
  log "building $GATEWAY_NAME: $GATEWAY_BUILD"
  (cd "$CALLER_DIR" && bash -c "$GATEWAY_BUILD") >"$RESULTS_DIR/$GATEWAY_NAME-build.log" 2>&1 ||
    SKIP_REASON[$GATEWAY_NAME]="GATEWAY_BUILD failed (see $GATEWAY_NAME-build.log)"
fi

# ------------------------------------------------------ per-system setup
# system_cmd NAME DIR: prints the command line that starts NAME.
system_cmd() {
  local name=$1 dir=$2 q
  case $name in
  limit-sync | limit-async)
    printf '%q -mode %s -addr 127.0.0.1:%s -sink-a %q -sink-b %q' \
      "$BIN/limit" "${name#limit-}" "$SYS_PORT" "$SINK_A_URL" "$SINK_B_URL"
    ;;
  benthos)
    render "$(cat "$HERE/benthos/benthos.yaml.tmpl")" >"$dir/benthos.yaml"
    printf '%q -c %q' "$BENTHOS_BIN" "$dir/benthos.yaml"
    ;;
  "$GATEWAY_NAME")
    [[ -n "$GATEWAY_CMD" ]] || return 1
    DATA_DIR="$dir/data"; mkdir -p "$DATA_DIR"
    CONFIG_PATH=""
    if [[ -n "$GATEWAY_CONFIG" ]]; then
      q=$(abs_from_caller "$GATEWAY_CONFIG")
      [[ -f "$q" ]] || return 1
      CONFIG_PATH="$dir/$(basename "${q%.tmpl}")"
      render "$(cat "$q")" >"$CONFIG_PATH"
    fi
    render "$GATEWAY_CMD"
    ;;
  *) return 1 ;;
  esac
}

sink_json() { curl -s --max-time 3 "http://127.0.0.1:$1/count" || echo '{}'; }

wait_http_ok() { # URL SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -sf --max-time 1 -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}

wait_system_ready() { # PID OUTFILE CHECK (1: 200 + the OK JSON; 0: any 2xx)
  local pid=$1 out=$2 check=${3:-1} i code
  for ((i = 0; i < READY_TIMEOUT * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || return 2
    code=$(curl -s -o "$out" -w '%{http_code}' --max-time 5 -X POST \
      -H 'Content-Type: application/json' --data-binary @"$SAMPLE" "$SYS_URL" 2>/dev/null)
    if [[ "$check" = 0 && "$code" = 2[0-9][0-9] ]]; then
      return 0
    fi
    if [[ "$check" = 0 && "$code" =~ ^[134] ]]; then
      return 4 # answered, but not 2xx (5xx: keep waiting)
    fi
    if [[ "$code" = 200 ]]; then
      jq -e '.ActionStatus == "OK" and .ErrorCode == 0 and .ErrorInfo == ""' "$out" >/dev/null 2>&1 && return 0
      return 3 # answered, but not the OK JSON
    fi
    sleep 0.25
  done
  return 1
}

# wait_drain TARGET: waits until both sinks' ok counters stop moving (for
# 2 s), or reach TARGET unique deliveries and hold still for 1 s; prints the
# seconds it waited. Bounded by DRAIN_TIMEOUT.
wait_drain() {
  local target=${1:-0} start prev="" cur a b ua ub still=0 need
  start=$(date +%s.%N)
  while :; do
    a=$(sink_json "$SINK_A_PORT"); b=$(sink_json "$SINK_B_PORT")
    cur="$(jq -r '.ok // 0' <<<"$a")/$(jq -r '.ok // 0' <<<"$b")"
    ua=$(jq -r '.unique_ok // 0' <<<"$a"); ub=$(jq -r '.unique_ok // 0' <<<"$b")
    if [[ "$cur" == "$prev" ]]; then ((still++)); else still=0; fi
    prev=$cur
    need=4
    ((target > 0 && ua >= target && ub >= target)) && need=2
    ((still >= need)) && break
    awk -v s="$start" -v n="$(date +%s.%N)" -v m="$DRAIN_TIMEOUT" 'BEGIN{exit !(n-s>m)}' && break
    sleep 0.5
  done
  awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN{printf "%.1f", n-s}'
}

run_wrk() { # SECONDS OUTFILE KEY_EPOCH [COUNT_STATUS]
  # in the background + wait, so that a signal to run.sh is handled at once
  BODY_MODE=$BODY_MODE KEY_EPOCH=$3 COUNT_STATUS=${4:-0} wrk -t"$THREADS" -c"$CONNS" -d"$1"s --timeout "${WRK_TIMEOUT}s" \
    -s "$HERE/wrk/post.lua" "$SYS_URL" >"$2" 2>&1 &
  local pid=$!
  STARTED+=("$pid")
  wait "$pid"
  stop_pid "$pid"
}

TSV="$RESULTS_DIR/results.tsv"
printf 'round\tsystem\tstatus\trps\tp50_ms\tp99_ms\terrors\tnon2xx\taccepted\ta_unique\tb_unique\ta_dup\tb_dup\ta_503\tb_503\tlost\tgap\trss_mb\tcpu_pct\tdrain_s\tsink_conns\tsent\n' >"$TSV"

row_skip() { # ROUND NAME REASON
  printf '%s\t%s\t%s\n' "$1" "$2" "SKIP: $3" >>"$TSV"
  log "round $1 $2: skipped - $3"
}

# accepted = 2xx answers: exact when wrk/post.lua counted them (COUNT_STATUS=1),
# otherwise wrk's answers below 400 (every system checked for the OK JSON
# answers 200 or an error, never 1xx/3xx).
JQ_ACCEPTED='(if .status_2xx != null then .status_2xx else (.requests // 0) - (.err_status // 0) end)'

run_one() {
  local round=$1 name=$2 dir p cmd spid apid bpid rc check=1
  [[ "$name" == "$GATEWAY_NAME" && "$GATEWAY_ANSWER_CHECK" = 0 ]] && check=0
  dir="$RESULTS_DIR/r$round-$name"; mkdir -p "$dir"
  if [[ -n "${SKIP_REASON[$name]:-}" ]]; then row_skip "$round" "$name" "${SKIP_REASON[$name]}"; return; fi
  for p in "$SYS_PORT" "$SINK_A_PORT" "$SINK_B_PORT" "$ADMIN_PORT"; do
    if port_busy "$p"; then row_skip "$round" "$name" "port $p already in use"; return; fi
  done
  cmd=$(system_cmd "$name" "$dir") || { row_skip "$round" "$name" "unknown system or missing config"; return; }
  printf '%s\n' "$cmd" >"$dir/cmd.txt"

  start_bg "$dir/sink-a.log" "$(printf '%q -addr 127.0.0.1:%s -name A -fail-ratio %s -latency %s' \
    "$BIN/sink" "$SINK_A_PORT" "$SINK_FAIL_RATIO" "$SINK_LATENCY")"; apid=$LAST_PID
  start_bg "$dir/sink-b.log" "$(printf '%q -addr 127.0.0.1:%s -name B -fail-ratio %s -latency %s' \
    "$BIN/sink" "$SINK_B_PORT" "$SINK_FAIL_RATIO" "$SINK_LATENCY")"; bpid=$LAST_PID
  if ! wait_http_ok "http://127.0.0.1:$SINK_A_PORT/count" 10 || ! wait_http_ok "http://127.0.0.1:$SINK_B_PORT/count" 10; then
    row_skip "$round" "$name" "sinks did not start"; stop_pid "$apid"; stop_pid "$bpid"; return
  fi

  log "round $round $name: starting"
  start_bg "$dir/system.log" "$cmd"; spid=$LAST_PID
  wait_system_ready "$spid" "$dir/ready-response.json" "$check"; rc=$?
  if ((rc != 0)); then
    case $rc in 2) p="process exited (see system.log)" ;; 3) p="answer is not the OK JSON: $(head -c 200 "$dir/ready-response.json")" ;;
    4) p="answer is not 2xx: $(head -c 200 "$dir/ready-response.json")" ;; *) p="not ready in ${READY_TIMEOUT}s" ;; esac
    row_skip "$round" "$name" "$p"; stop_pid "$spid"; stop_pid "$apid"; stop_pid "$bpid"; return
  fi

  log "round $round $name: warm-up ${WARMUP}s"
  run_wrk "$WARMUP" "$dir/wrk-warmup.txt" 0 $((1 - check))
  wait_drain 0 >/dev/null
  curl -s --max-time 3 -X POST "http://127.0.0.1:$SINK_A_PORT/reset" >/dev/null
  curl -s --max-time 3 -X POST "http://127.0.0.1:$SINK_B_PORT/reset" >/dev/null

  log "round $round $name: load ${DURATION}s, $CONNS connections"
  local t0 t1 c0 c1 w drain a b
  c0=$(cpu_ticks "$spid"); t0=$(date +%s.%N)
  run_wrk "$DURATION" "$dir/wrk.txt" 1 $((1 - check))
  c1=$(cpu_ticks "$spid"); t1=$(date +%s.%N)
  w=$(sed -n 's/^WRK_RESULT //p' "$dir/wrk.txt" | tail -1)
  [[ -n "$w" ]] || w='{}'
  local accepted
  accepted=$(jq -r "$JQ_ACCEPTED" <<<"$w")
  drain=$(wait_drain "$accepted")
  a=$(sink_json "$SINK_A_PORT"); b=$(sink_json "$SINK_B_PORT")
  printf '%s\n' "$a" >"$dir/sink-a-count.json"; printf '%s\n' "$b" >"$dir/sink-b-count.json"
  # a relay's own counters, if it serves GET /stats (limit does)
  p="http://127.0.0.1:$SYS_PORT/stats"
  [[ "$name" == "$GATEWAY_NAME" && -n "$GATEWAY_STATS_URL" ]] && p=$(render "$GATEWAY_STATS_URL")
  curl -sf --max-time 3 "$p" -o "$dir/relay-stats.json" 2>/dev/null || rm -f "$dir/relay-stats.json"
  local rss alive=ok
  rss=$(peak_rss_kb "$spid")
  kill -0 "$spid" 2>/dev/null || alive="CRASHED"
  stop_pid "$spid"; stop_pid "$apid"; stop_pid "$bpid"

  jq -rn --argjson w "$w" --argjson a "$a" --argjson b "$b" \
    --arg round "$round" --arg name "$name" --arg status "$alive" \
    --arg rss "${rss:-0}" --arg c0 "$c0" --arg c1 "$c1" --arg t0 "$t0" --arg t1 "$t1" \
    --arg tck "$CLK_TCK" --arg drain "$drain" --arg key "$([[ $BODY_MODE == static ]] && echo ok || echo unique_ok)" '
    def n(x): (x // 0);
    ($w | '"$JQ_ACCEPTED"') as $acc
    | (n($w.requests) - $acc) as $non2xx
    | ([n($a[$key]), n($b[$key])] | min) as $got
    | ([$acc - $got, 0] | max) as $lost
    | (n($w.sent) - $got) as $gap
    | [ $round, $name, $status,
        ((n($w.requests) / ((n($w.duration_us)) / 1e6 + 1e-9)) | floor),
        ((n($w.lat_p50_us) / 1000) * 100 | round / 100),
        ((n($w.lat_p99_us) / 1000) * 100 | round / 100),
        ($w | n(.err_connect) + n(.err_read) + n(.err_write) + n(.err_timeout)) + $non2xx,
        $non2xx, $acc,
        n($a[$key]), n($b[$key]), n($a.dup_ok), n($b.dup_ok), n($a.failed), n($b.failed),
        $lost, $gap,
        (($rss | tonumber) / 1024 * 10 | round / 10),
        ((($c1 | tonumber) - ($c0 | tonumber)) / ($tck | tonumber) / (($t1 | tonumber) - ($t0 | tonumber)) * 100 | round),
        ($drain | tonumber), (n($a.conns) + n($b.conns)), n($w.sent)
      ] | @tsv' >>"$TSV"
  log "round $round $name: done ($(tail -1 "$TSV" | cut -f4) req/s)"
}

# ----------------------------------------------------------------- main
{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "go: $(go version)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "load: $THREADS threads, $CONNS connections, ${WARMUP}s warm-up + ${DURATION}s measured, body_mode=$BODY_MODE, rounds=$ROUNDS"
  echo "sinks: fail_ratio=$SINK_FAIL_RATIO latency=$SINK_LATENCY"
  echo "systems: $SYSTEMS"
  [[ -n "$BENTHOS_NOTE" ]] && echo "$BENTHOS_NOTE"
  [[ -n "$GATEWAY_CMD" ]] && echo "$GATEWAY_NAME: $GATEWAY_CMD${GATEWAY_CONFIG:+ (config template $GATEWAY_CONFIG)}"
  [[ -n "$GATEWAY_CMD" && "$GATEWAY_ANSWER_CHECK" = 0 ]] && echo "$GATEWAY_NAME: answer not checked (GATEWAY_ANSWER_CHECK=0): accepted = 2xx answers, counted by wrk/post.lua"
} >"$RESULTS_DIR/env.txt"

for ((r = 1; r <= ROUNDS; r++)); do
  for s in $SYSTEMS; do
    run_one "$r" "$s"
    sleep "$SETTLE"
  done
done

# -------------------------------------------------------------- summary
summary() {
  cat "$RESULTS_DIR/env.txt"
  echo
  awk -F'\t' -v dur="$DURATION" '
    function e2e(r) { return r[9] > 0 ? r[9] / (dur + r[20]) : 0 }
    NR == 1 { next }
    { row[NR] = $0; split($0, g, "\t"); if ($2 == "limit-sync") ls[$1] = $4; if ($2 == "limit-async") { la[$1] = $4; le[$1] = e2e(g) } }
    END {
      fmt = "%-5s %-14s %7s %6s %7s %7s %6s %7s %7s %6s %8s %8s %8s %5s %5s %5s %6s %5s %7s\n"
      printf fmt, "round", "system", "req/s", "x_sync", "x_async", "e2e/s", "x_e2e", "p50_ms", "p99_ms", "errors", "accepted", "sinkA", "sinkB", "lost", "gap", "dups", "RSS_MB", "CPU%", "conns"
      for (i = 2; i <= NR; i++) {
        n = split(row[i], f, "\t")
        if (f[3] ~ /^SKIP/) { printf "%-5s %-14s %s\n", f[1], f[2], f[3]; continue }
        xs = (ls[f[1]] > 0) ? sprintf("%.2f", f[4] / ls[f[1]]) : "-"
        xa = (la[f[1]] > 0) ? sprintf("%.2f", f[4] / la[f[1]]) : "-"
        name = f[2]; if (f[3] != "ok") name = name "(" f[3] ")"
        e = e2e(f); xe = (le[f[1]] > 0 && e > 0) ? sprintf("%.2f", e / le[f[1]]) : "-"
        printf fmt, f[1], name, f[4], xs, xa, sprintf("%.0f", e), xe, f[5], f[6], f[7], f[9], f[10], f[11], f[16], f[17], f[12] + f[13], f[18], f[19], f[21]
      }
    }' "$TSV"
  echo
  echo "x_sync / x_async: req/s relative to limit-sync / limit-async of the same round."
  echo "e2e/s = accepted / (measured seconds + drain seconds): callbacks fully delivered per second, end to end;"
  echo "x_e2e relative to limit-async's. A system that answers faster than it delivers builds a backlog: its"
  echo "req/s is what it can absorb in a burst, its e2e/s what it can sustain."
  echo "accepted = wrk 2xx answers; sinkA/sinkB = distinct MsgKeys each sink answered 200 to;"
  echo "lost = accepted callbacks missing at a sink (lower bound); gap = callbacks wrk sent that did not reach"
  echo "both sinks (upper bound on lost: also counts error answers and requests in flight when wrk stopped;"
  echo "gap 0 proves nothing was lost); dups = MsgKeys a sink got (200) more than once."
  echo "RSS_MB = peak RSS (VmHWM) of the system process; CPU% = its CPU over the measured window (200% = both cores)."
  echo "conns = TCP connections the two sinks accepted in the measured window (keep-alive reuse: ~connections in flight)."
  echo "Raw rows: ${TSV#"$HERE"/}"
}
summary | tee "$RESULTS_DIR/summary.txt"
