# Hodei's container image: one static binary, for the server, agents and
# the init container of Kubernetes worker pods (see docs/deploy.md).
#
#   DOCKER_BUILDKIT=1 docker build -t hodei .
#
# The build stage compiles the binary with CGO_ENABLED=0 in GO_IMAGE (a
# Debian-based Go image: it also gives busybox-static and the CA
# certificates) and lays out the final root file system with
# deploy/container/rootfs.sh in /var/tmp/hodei-image/rootfs. BUILD names the
# stage or image that holds that directory: "build" (the default) is the
# stage below; the tests pass an image made from a binary built outside,
# since they cannot pull a Go image (internal/deploy). Build with BuildKit,
# which skips the stages the image does not use.
ARG GO_IMAGE=golang:1.26-bookworm
ARG BUILD=build

FROM ${GO_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /var/tmp/hodei-image/hodei ./cmd/hodei \
 && deploy/container/rootfs.sh /var/tmp/hodei-image/rootfs /var/tmp/hodei-image/hodei /bin/busybox /etc/ssl/certs/ca-certificates.crt

FROM ${BUILD} AS rootfs

# The image: nothing but the root file system above. It runs as hodei
# (65532), works on a read-only root file system (docker run --read-only
# --tmpfs /tmp, or readOnlyRootFilesystem in a pod) and keeps its state in
# the volume /var/lib/hodei. By default it is a server that runs no job
# itself (HODEI_WORKERS=0): agents and worker pools run them. Every flag can
# be set from its HODEI_* variable.
FROM scratch
COPY --from=rootfs /var/tmp/hodei-image/rootfs/ /
ENV PATH=/usr/local/bin:/bin \
    HOME=/var/lib/hodei \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HODEI_DATA_DIR=/var/lib/hodei \
    HODEI_HTTP=0.0.0.0:8080 \
    HODEI_NATS_LISTEN=0.0.0.0:4222 \
    HODEI_WORKERS=0
USER 65532:65532
WORKDIR /var/lib/hodei
VOLUME /var/lib/hodei
EXPOSE 8080 4222
ENTRYPOINT ["/usr/local/bin/hodei"]
CMD ["server"]
