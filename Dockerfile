# Fanout container image: a static binary on distroless, running as a non-root user.
#
#   docker build -t fanout --build-arg VERSION=1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) .
#   docker run -d --name fanout -p 8080:8080 \
#     -v "$PWD/fanout:/etc/fanout:ro" -v fanout-data:/data fanout
#
# The image reads /etc/fanout/config.yaml ($FANOUT_CONFIG) and keeps its queue in /data, the
# only place it writes: set `queue.dir: /data` in the config. See docs/operating.md.

# ---------------------------------------------------------------------------- build
FROM golang:1.26-bookworm AS build

# Module download settings, for builds behind a proxy or a private module mirror
# (--build-arg GOPROXY=...). Empty means Go's default.
ARG GOPROXY=
ARG GOFLAGS=
ARG GOSUMDB=
ARG GONOSUMDB=
ARG GONOSUMCHECK=
ARG GOPRIVATE=
ARG GONOPROXY=
ARG GOINSECURE=

WORKDIR /src

# The modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .

ARG VERSION=dev
ARG COMMIT=unknown
# The cache mount keeps Go's build cache between builds (BuildKit, buildah); the binary is
# the same without it.
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/fanout ./cmd/fanout \
 && /out/fanout version

# Empty folders for the runtime image: the queue's (owned by the gateway's user below) and
# the config's (root's: the gateway only reads it).
RUN mkdir -p /out/data /out/etc/fanout

# ---------------------------------------------------------------------------- runtime
# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot; no shell.
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="fanout" \
      org.opencontainers.image.description="Tencent Cloud IM webhook fan-out gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="https://github.com/fanout-gw/fanout"

COPY --from=build /out/fanout /fanout
COPY --from=build /out/etc/fanout /etc/fanout
COPY --from=build --chown=65532:65532 /out/data /data

# The config: mount a folder holding config.yaml here (read-only is fine), or point
# FANOUT_CONFIG elsewhere. The folder, not the file: edits then reach the container and
# reload the gateway.
ENV FANOUT_CONFIG=/etc/fanout/config.yaml

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# A relative queue.dir (the default ./data) also lands in the volume.
WORKDIR /data
VOLUME ["/data"]

# 8080: callbacks (server.listen). 9090: the admin port (admin.listen), which listens on
# 127.0.0.1 by default: publish it only with admin.listen 0.0.0.0:9090 and admin.token set.
EXPOSE 8080 9090

# GET /healthz on the admin port ($FANOUT_HEALTH_URL, default http://127.0.0.1:9090/healthz).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/fanout", "health"]

# SIGTERM stops taking callbacks, finishes those in flight and closes the queue (20 s at
# most): give the container at least that (docker stop -t 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/fanout"]
CMD ["serve"]
