#!/usr/bin/env bash
# container-check.sh: build the container image from the Dockerfile and check that it runs
# as docs/operating.md says: health endpoints and HEALTHCHECK, a non-root user without
# capabilities, /data as the only place it can write, a callback delivered end to end, a
# clean stop, and the same with a read-only root file system.
#
# Run it as root from anywhere in the repository:
#   scripts/container-check.sh
#
# It builds with ../shared/container/build-image.sh (buildah/podman, with local stand-ins
# for the base images when no registry is reachable) and runs the containers with podman on
# the host network. It starts only containers named fanout-check-<pid>-* and one volume of
# that name, and stops and removes exactly those when it ends (also on Ctrl-C).
#
# Environment (all optional):
#   BUILD_IMAGE    path of build-image.sh (default: ../shared/container/build-image.sh
#                  beside the repository)
#   IMAGE          image tag (default fanout:local)
#   NO_BUILD=1     skip the build and check the existing IMAGE
#   VERSION        version baked into the binary (default: 0.0.0-container-check)
#   CALLBACK_PORT  ADMIN_PORT  ECHO_PORT   host ports used (18089 18099 18088)
#   PROBE_PORT     first of two more ports for the write probes (18189)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD_IMAGE=${BUILD_IMAGE:-$(cd "$ROOT/.." && pwd)/shared/container/build-image.sh}
export IMAGE=${IMAGE:-fanout:local}
VERSION=${VERSION:-0.0.0-container-check}
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
CALLBACK_PORT=${CALLBACK_PORT:-18089}
ADMIN_PORT=${ADMIN_PORT:-18099}
ECHO_PORT=${ECHO_PORT:-18088}
PROBE_PORT=${PROBE_PORT:-18189}
PFX=fanout-check-$$
VOL=$PFX-data
SAMPLE=examples/app-and-audit/payloads/C2C.CallbackAfterSendMsg.json
SAMPLE2=examples/app-and-audit/payloads/Group.CallbackAfterSendMsg.json
# podman schedules health checks with systemd timers; without systemd, run them on demand
export DISABLE_HC_SYSTEMD=true

say() { printf '\n== %s\n' "$*"; }
die() {
	printf 'container-check: %s\n' "$*" >&2
	exit 2
}

[[ $(id -u) == 0 ]] || die "run as root (build-image.sh and podman's storage need it)"
[[ -x $BUILD_IMAGE ]] || die "no build-image.sh at $BUILD_IMAGE (set BUILD_IMAGE)"
command -v curl >/dev/null || die "curl is needed"

# ------------------------------------------------------------------ results
RESULTS=() FAILED=0
pass() {
	RESULTS+=("PASS  $1")
	printf 'PASS  %s\n' "$1"
}
fail() {
	RESULTS+=("FAIL  $1")
	FAILED=$((FAILED + 1))
	printf 'FAIL  %s\n' "$1"
}
expect() { # expect DESCRIPTION CMD... : pass when CMD succeeds
	local d=$1
	shift
	if "$@"; then pass "$d"; else fail "$d"; fi
}

# ------------------------------------------------------------------ what we start, and cleanup
TMP=$(mktemp -d /tmp/fanout-check.XXXXXX)
chmod 755 "$TMP"
NAMES=() PIDS=()
cleanup() {
	local n p
	for n in "${NAMES[@]}"; do
		if podman container exists "$n" 2>/dev/null; then
			podman stop -t 10 "$n" >/dev/null 2>&1 || true
			podman rm -f -v "$n" >/dev/null 2>&1 || true
		fi
	done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	podman volume exists "$VOL" 2>/dev/null && podman volume rm -f "$VOL" >/dev/null 2>&1
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME LOG RUN_OPTS ARGS... : run the image through build-image.sh --run, in the background
start() {
	local name=$1 log=$2 opts=$3
	shift 3
	NAMES+=("$name")
	RUN_NAME=$name RUN_OPTS=$opts "$BUILD_IMAGE" --no-build --run "$@" >"$log" 2>&1 &
	PIDS+=($!)
	LAST_PID=$!
}

# prun ARGS... : a one-off podman run with the options build-image.sh --run uses
prun() {
	podman run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 --network host --rm "$@"
}

# wait_for SECONDS CMD... : retry CMD every 0.25 s until it succeeds or time runs out
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || return 1
		sleep 0.25
	done
}
not() { ! "$@"; }
http_ok() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1") == 200 ]]; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
in_log() { grep -q -- "$2" "$1"; }
deliveries() { grep -c '^--- #' "$TMP/echo.log" || true; }
root_only() { # root_only "UID:GID MODE ..." : every entry is 0:0 without group/other write
	local u m
	set -- $1
	while (($#)); do
		u=$1 m=$2
		shift 2
		[[ $u == 0:0 ]] && ((((8#$m) & 8#022) == 0)) || return 1
	done
}

write_config() { # write_config DIR QUEUE_DIR CALLBACK ADMIN
	mkdir -p "$1"
	chmod 755 "$1"
	cat >"$1/config.yaml" <<-EOF
		# written by scripts/container-check.sh
		server:
		  listen: ":$3"
		admin:
		  listen: "127.0.0.1:$4"
		tencent:
		  apps:
		    - sdkappid: 1400000000
		queue:
		  dir: $2
		destinations:
		  echo:
		    url: http://127.0.0.1:$ECHO_PORT/im/callback
		    forward_query: true
		routes:
		  - name: everything
		    to: [echo]
	EOF
	chmod 644 "$1/config.yaml"
}

callback() { # callback PAYLOAD : POST it as Tencent IM would; prints "STATUS BODY"
	local cmd
	cmd=$(sed -n 's/.*"CallbackCommand": *"\([^"]*\)".*/\1/p' "$1" | head -1)
	curl -s --max-time 5 -w ' %{http_code}' \
		"http://127.0.0.1:$CALLBACK_PORT/callback?SdkAppid=1400000000&CallbackCommand=$cmd&contenttype=json&ClientIP=127.0.0.1&OptPlatform=iOS" \
		-H 'Content-Type: application/json' --data-binary @"$1"
}

# probe_write QUEUE_DIR WANT RUN_OPTS... : start the gateway with its queue in QUEUE_DIR, as
# the image's user, and report whether creating the store there fails with WANT
probe_write() {
	local dir=$1 want=$2 n=$((${#NAMES[@]}))
	shift 2
	local name=$PFX-probe-$n cfg=$TMP/probe-$n log=$TMP/probe-$n.log
	write_config "$cfg" "$dir" "$PROBE_PORT" "$((PROBE_PORT + 1))"
	NAMES+=("$name")
	prun --name "$name" --no-healthcheck --tmpfs /data -v "$cfg:/cfg:ro" -e FANOUT_CONFIG=/cfg/config.yaml "$@" \
		"$IMAGE" serve >"$log" 2>&1 &
	local pid=$! found=1
	PIDS+=("$pid")
	wait_for 30 grep -q "could not create storage directory" "$log" || found=0
	podman rm -f -v "$name" >/dev/null 2>&1 || true
	wait "$pid" 2>/dev/null || true
	if ((found)) && grep -q "could not create storage directory - mkdir ${dir%/}/jetstream: $want" "$log"; then
		return 0
	fi
	sed 's/^/    | /' "$log" | tail -5
	return 1
}

# ------------------------------------------------------------------ 1. build
T0=$SECONDS
if [[ ${NO_BUILD:-0} == 1 ]]; then
	say "using the existing image $IMAGE (NO_BUILD=1)"
else
	say "build $IMAGE with $BUILD_IMAGE (VERSION=$VERSION COMMIT=$COMMIT)"
	if "$BUILD_IMAGE" --build-arg "VERSION=$VERSION" --build-arg "COMMIT=$COMMIT"; then
		pass "image builds from the Dockerfile"
	else
		fail "image builds from the Dockerfile"
		exit 1
	fi
fi

for p in "$CALLBACK_PORT" "$ADMIN_PORT" "$ECHO_PORT" "$PROBE_PORT" "$((PROBE_PORT + 1))"; do
	port_free "$p" || die "port $p on 127.0.0.1 is in use; choose others (CALLBACK_PORT, ADMIN_PORT, ECHO_PORT, PROBE_PORT)"
done

# ------------------------------------------------------------------ 2. image metadata
say "image configuration"
field() { podman image inspect --format "$1" "$IMAGE"; }
expect "image user is 65532:65532 (got $(field '{{.Config.User}}'))" \
	test "$(field '{{.Config.User}}')" = 65532:65532
expect "entrypoint [\"/fanout\"], cmd [\"serve\"]" \
	test "$(field '{{json .Config.Entrypoint}} {{json .Config.Cmd}}')" = '["/fanout"] ["serve"]'
expect "volume /data" test "$(field '{{json .Config.Volumes}}')" = '{"/data":{}}'
expect "exposes 8080/tcp and 9090/tcp" \
	test "$(field '{{json .Config.ExposedPorts}}')" = '{"8080/tcp":{},"9090/tcp":{}}'
expect "HEALTHCHECK is exec form [\"CMD\",\"/fanout\",\"health\"] (no shell needed)" \
	test "$(field '{{json .HealthCheck.Test}}')" = '["CMD","/fanout","health"]'
expect "ENV FANOUT_CONFIG=/etc/fanout/config.yaml" \
	grep -qx 'FANOUT_CONFIG=/etc/fanout/config.yaml' <(field '{{range .Config.Env}}{{println .}}{{end}}')
# --tmpfs /data: one-off runs need no queue, and leave no anonymous volume behind
out=$(prun --no-healthcheck --tmpfs /data "$IMAGE" version 2>&1 || true)
echo "$out"
expect "fanout version reports VERSION and COMMIT from the build arguments" \
	grep -q "^fanout $VERSION (commit $COMMIT, go" <<<"$out"
out=$(prun --no-healthcheck --tmpfs /data "$IMAGE" 2>&1 || true)
expect "without a config the gateway exits naming /etc/fanout/config.yaml" \
	grep -q "/etc/fanout/config.yaml" <<<"$out"

# ------------------------------------------------------------------ 3. run
say "run: echo downstream on 127.0.0.1:$ECHO_PORT, gateway on :$CALLBACK_PORT, admin on 127.0.0.1:$ADMIN_PORT"
write_config "$TMP/etc" /data "$CALLBACK_PORT" "$ADMIN_PORT"
cat "$TMP/etc/config.yaml"
VOLS_BEFORE=$(podman volume ls -q | sort)
podman volume create "$VOL" >/dev/null
start "$PFX-echo" "$TMP/echo.log" "--no-healthcheck --tmpfs /data" echo --listen "127.0.0.1:$ECHO_PORT"
ECHO_PID=$LAST_PID
start "$PFX-gw" "$TMP/gw.log" \
	"-v $TMP/etc:/etc/fanout:ro -v $VOL:/data -e FANOUT_HEALTH_URL=http://127.0.0.1:$ADMIN_PORT/healthz"
GW_PID=$LAST_PID
wait_for 60 in_log "$TMP/echo.log" "listening on" || true
if wait_for 60 http_ok "http://127.0.0.1:$ADMIN_PORT/healthz"; then
	pass "GET http://127.0.0.1:$ADMIN_PORT/healthz from the host answers 200"
else
	fail "GET http://127.0.0.1:$ADMIN_PORT/healthz from the host answers 200"
	sed 's/^/    | /' "$TMP/gw.log" | tail -20
fi
expect "GET /readyz answers 200 (queue open in /data, config loaded)" \
	wait_for 20 http_ok "http://127.0.0.1:$ADMIN_PORT/readyz"

out=$(podman healthcheck run "$PFX-gw" 2>&1) && rc=0 || rc=$?
echo "    podman healthcheck run $PFX-gw: exit $rc${out:+, $out}"
expect "podman healthcheck run (the image's HEALTHCHECK, /fanout health) reports healthy" test "$rc" = 0
rc=0
podman exec "$PFX-gw" /fanout health --url http://127.0.0.1:1/healthz || rc=$?
expect "fanout health exits 1 when nothing answers (exit $rc)" test "$rc" = 1

pid=$(podman inspect --format '{{.State.Pid}}' "$PFX-gw")
ids=$(awk '/^Uid:|^Gid:/ {print $1, $2, $3, $4, $5}' "/proc/$pid/status")
echo "$ids" | sed 's/^/    /'
expect "the gateway process (host pid $pid) runs as uid 65532 and gid 65532 (real, effective, saved, fs)" \
	test "$(awk '/^Uid:|^Gid:/ {print $2 $3 $4 $5}' "/proc/$pid/status" | sort -u)" = 65532655326553265532
cap=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
expect "the gateway process has no effective capabilities (CapEff $cap)" test "$cap" = 0000000000000000

say "a callback, end to end"
out=$(callback "$SAMPLE")
echo "$out"
expect "POST /callback with $SAMPLE answers 200 OK" \
	test "$out" = '{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0} 200'
if wait_for 20 in_log "$TMP/echo.log" "Webhook-Id: msg_"; then
	pass "the echo downstream received the delivery (with Webhook-Id and Fanout-Route headers)"
	sed -n '/^--- #1/,/^$/p' "$TMP/echo.log" | sed 's/^/    | /'
else
	fail "the echo downstream received the delivery"
fi
out=$(callback "$SAMPLE")
sleep 1
expect "the same callback again is answered OK ($out) and not delivered twice ($(deliveries) delivery)" \
	test "$out $(deliveries)" = '{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0} 200 1'
metrics=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics")
grep -E '^fanout_(callbacks_total|deliveries_total|queue_pending)' <<<"$metrics" | sed 's/^/    /'
expect "/metrics counts it: fanout_deliveries_total{destination=\"echo\",outcome=\"delivered\"} 1" \
	grep -q '^fanout_deliveries_total{destination="echo",outcome="delivered"} 1$' <<<"$metrics"

say "file system: where uid 65532 can write"
mnt=$(podman mount "$PFX-gw")
stat -c '    %A %u:%g %n' "$mnt/" "$mnt/etc" "$mnt/etc/fanout" "$mnt/data" "$mnt/tmp" "$mnt/home/nonroot" "$mnt/fanout" | sed "s#$mnt##"
closed=$(stat -c '%u:%g %a' "$mnt/" "$mnt/etc/fanout" | tr '\n' ' ')
writable=$(find "$mnt" -xdev ! -type l \( -perm -o+w -o \( -uid 65532 -perm -u+w \) -o \( -gid 65532 -perm -g+w \) \) -printf '/%P\n' | sort | tr '\n' ' ')
podman umount "$PFX-gw" >/dev/null
echo "    writable by uid 65532 in the container's file system (mounts aside): $writable"
expect "/ and /etc/fanout belong to root:root and are not group- or world-writable ($closed)" \
	root_only "$closed"
expect "in the image, uid 65532 can write only /data, /home/nonroot (its home) and /tmp (mode 1777)" \
	test "$writable" = "/data /home/nonroot /tmp "
voldir=$(podman volume inspect --format '{{.Mountpoint}}' "$VOL")
echo "    volume $VOL: $(stat -c '%A %u:%g' "$voldir"), holds: $(cd "$voldir" && find . -maxdepth 2 | sort | tr '\n' ' ')"
expect "the queue is in the volume: /data/jetstream owned by 65532" \
	test "$(stat -c '%u' "$voldir/jetstream" 2>/dev/null)" = 65532

say "writes as the image's user, by the gateway itself (queue.dir elsewhere than /data)"
expect "queue.dir / fails: mkdir /jetstream: permission denied" probe_write / "permission denied"
expect "queue.dir /etc/fanout fails: mkdir /etc/fanout/jetstream: permission denied" \
	probe_write /etc/fanout "permission denied"

say "stop"
podman stop -t 30 "$PFX-gw" >/dev/null
rc=0
wait "$GW_PID" || rc=$?
tail -3 "$TMP/gw.log" | sed 's/^/    | /'
expect "podman stop (SIGTERM) ends the gateway with exit $rc after \"fanout stopped\"" \
	test "$rc $(grep -c 'fanout stopped' "$TMP/gw.log")" = "0 1"
expect "the stopped container is removed (--rm)" not podman container exists "$PFX-gw"

# ------------------------------------------------------------------ 4. read-only root
say "run again with a read-only root file system (--read-only, no tmpfs): only /data is writable"
start "$PFX-ro" "$TMP/ro.log" \
	"--read-only --read-only-tmpfs=false -v $TMP/etc:/etc/fanout:ro -v $VOL:/data -e FANOUT_HEALTH_URL=http://127.0.0.1:$ADMIN_PORT/healthz"
RO_PID=$LAST_PID
if wait_for 60 http_ok "http://127.0.0.1:$ADMIN_PORT/readyz"; then
	pass "read-only root: /healthz and /readyz answer 200 (same volume, queue reopened)"
else
	fail "read-only root: /healthz and /readyz answer 200"
	sed 's/^/    | /' "$TMP/ro.log" | tail -20
fi
expect "read-only root: the container really has ReadonlyRootfs" \
	test "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$PFX-ro")" = true
expect "read-only root: podman healthcheck run reports healthy" podman healthcheck run "$PFX-ro"
out=$(callback "$SAMPLE2")
expect "read-only root: POST /callback with $SAMPLE2 answers 200 OK" \
	test "$out" = '{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0} 200'
expect "read-only root: the echo downstream received it" \
	wait_for 20 in_log "$TMP/echo.log" "CallbackCommand=Group.CallbackAfterSendMsg"
expect "read-only root: queue.dir /tmp fails: read-only file system" \
	probe_write /tmp "read-only file system" --read-only --read-only-tmpfs=false
expect "read-only root: queue.dir /home/nonroot fails: read-only file system" \
	probe_write /home/nonroot "read-only file system" --read-only --read-only-tmpfs=false
podman stop -t 30 "$PFX-ro" >/dev/null
rc=0
wait "$RO_PID" || rc=$?
expect "read-only root: podman stop ends it with exit 0" test "$rc" = 0
podman stop -t 10 "$PFX-echo" >/dev/null 2>&1 || true
wait "$ECHO_PID" 2>/dev/null || true
left=$(comm -13 <(echo "$VOLS_BEFORE") <(podman volume ls -q | sort) | grep -vx "$VOL" | tr '\n' ' ' || true)
expect "no container of this run is left, and no volume but $VOL (removed on exit)${left:+: left $left}" \
	test -z "$left$(podman ps -a --format '{{.Names}}' | grep "^$PFX-" || true)"

# ------------------------------------------------------------------ summary
say "summary: $IMAGE ($(podman image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12), $(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec --suffix=B)), $((SECONDS - T0)) s"
printf '%s\n' "${RESULTS[@]}"
echo "containers started and removed: ${NAMES[*]}; volume $VOL removed"
if ((FAILED)); then
	echo "$FAILED check(s) FAILED"
	exit 1
fi
echo "all ${#RESULTS[@]} checks passed"
