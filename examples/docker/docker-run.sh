#!/bin/sh
# docker-run.sh: Fanout and a `fanout echo` receiver with plain `docker run`, the same setup
# as compose.yaml. Works with podman too: DOCKER=podman ./docker-run.sh
#
#   export FANOUT_ADMIN_TOKEN=$(openssl rand -hex 16)
#   ./docker-run.sh            # start (build the image first: docker build -t fanout:local ../..)
#   ./docker-run.sh down       # stop and remove the containers and the network (not the queue volume)
set -eu
cd "$(dirname "$0")"
DOCKER=${DOCKER:-docker}
IMAGE=${IMAGE:-fanout:local}
NET=fanout-try

if [ "${1:-up}" = down ]; then
	$DOCKER stop -t 30 fanout-try >/dev/null 2>&1 || true
	for c in fanout-try fanout-try-echo; do $DOCKER rm -f -v $c >/dev/null 2>&1 || true; done
	$DOCKER network rm $NET >/dev/null 2>&1 || true
	echo "stopped; the queue volume stays: $DOCKER volume rm fanout-try-data"
	exit 0
fi

: "${FANOUT_ADMIN_TOKEN:?export FANOUT_ADMIN_TOKEN first: export FANOUT_ADMIN_TOKEN=\$(openssl rand -hex 16)}"

$DOCKER network inspect $NET >/dev/null 2>&1 || $DOCKER network create $NET >/dev/null
$DOCKER volume inspect fanout-try-data >/dev/null 2>&1 || $DOCKER volume create fanout-try-data >/dev/null

# The receiver: the same image, running `fanout echo`. The image's health check asks a
# gateway's admin port, which echo does not have; echo keeps no queue (tmpfs on /data).
$DOCKER run -d --name fanout-try-echo --network $NET --network-alias echo \
	--read-only --cap-drop ALL --security-opt no-new-privileges \
	--no-healthcheck --tmpfs /data \
	"$IMAGE" echo --listen 0.0.0.0:8000

# The gateway: config folder read-only, queue on a volume, nothing else writable.
$DOCKER run -d --name fanout-try --network $NET \
	-p 8080:8080 -p 127.0.0.1:9090:9090 \
	-v "$PWD/fanout:/etc/fanout:ro" \
	-v fanout-try-data:/data \
	-e FANOUT_ADMIN_TOKEN -e TIM_CALLBACK_TOKEN \
	--read-only --cap-drop ALL --security-opt no-new-privileges \
	--stop-timeout 30 --restart unless-stopped \
	"$IMAGE" serve --log-format text

echo "fanout: http://127.0.0.1:8080/callback   admin: http://127.0.0.1:9090 (token FANOUT_ADMIN_TOKEN)"
echo "logs:   $DOCKER logs -f fanout-try   $DOCKER logs -f fanout-try-echo"
