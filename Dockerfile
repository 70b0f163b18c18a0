# syntax=docker/dockerfile:1
#
# Container image for unassigned_port_exporter.
#
# Build (from the repository root; the version comes from Cargo.toml):
#   VERSION=$(cargo metadata --no-deps --format-version 1 \
#     | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
#   docker build \
#     --build-arg VERSION="$VERSION" \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     -t unassigned_port_exporter:"$VERSION" .
#
# Run (host network and host PID namespace: the exporter reports the host's
# listening sockets and their owning processes; see docs/deployment.md):
#   docker run -d --name unassigned_port_exporter \
#     --network host --pid host --user 0:0 \
#     --cap-drop ALL --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH \
#     --security-opt no-new-privileges --security-opt apparmor=unconfined \
#     --read-only unassigned_port_exporter:"$VERSION"
#
# No HEALTHCHECK: the distroless runtime has no shell, curl or wget to probe
# /healthz with. Orchestrators probe GET /healthz on :9276 themselves
# (the Kubernetes DaemonSet in deploy/kubernetes does).

############################ build ############################
FROM rust:1-bookworm AS build

# Build arguments are also environment variables of the RUN steps below, so a
# build script can read REVISION (there is no .git in the build context).
ARG VERSION=unknown
ARG REVISION=unknown

WORKDIR /src
# .dockerignore keeps target/, .git and other local state out of the context.
COPY . .

# Refuse to label an image with a version the crate does not have.
RUN if [ "$VERSION" != "unknown" ] \
        && ! grep -qx "version = \"$VERSION\"" Cargo.toml; then \
        echo "VERSION=$VERSION does not match the version in Cargo.toml" >&2; \
        exit 1; \
    fi \
 && cargo build --release --locked --bin unassigned_port_exporter \
 && install -D -m 0755 target/release/unassigned_port_exporter \
        /out/unassigned_port_exporter

########################### runtime ###########################
# Debian 12 with glibc and libgcc (what a Rust binary links), no shell,
# no package manager; the :nonroot tag runs as uid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=unknown
ARG REVISION=unknown

LABEL org.opencontainers.image.title="unassigned_port_exporter" \
      org.opencontainers.image.description="Prometheus exporter for sockets listening on IANA-unassigned ports" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=build /out/unassigned_port_exporter /usr/local/bin/unassigned_port_exporter

# Non-root by default. Owner lookup of other users' processes needs
# CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, which a non-root uid only gets as
# ambient capabilities; Kubernetes does not grant those, so the DaemonSet runs
# this image as uid 0 with every other capability dropped. Without them the
# exporter still reports every listener, only without process/pid/user.
USER 65532:65532

EXPOSE 9276

ENTRYPOINT ["/usr/local/bin/unassigned_port_exporter"]
