# syntax=docker/dockerfile:1
# nodemedic container image: build with
#   docker build -t nodemedic --build-arg VERSION=<version> --build-arg REVISION=<git sha> .
# and for Graviton nodes (arm64), natively or with QEMU through buildx:
#   docker buildx build --platform linux/arm64,linux/amd64 -t <registry>/nodemedic:<tag> --push .
# Multi-stage: the build stage compiles a release binary; the runtime stage is distroless
# (glibc, CA certificates, no shell) and runs as the non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
# Without the `demo` feature: no lab worlds and no emulator launcher in the production binary.
# The registry and target directories are BuildKit cache mounts, so a rebuild after a source
# change compiles nodemedic, not its dependencies again.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin nodemedic \
    && strip target/release/nodemedic \
    && cp target/release/nodemedic /nodemedic \
    && mkdir -p /state

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="nodemedic" \
      org.opencontainers.image.description="Finds out why Amazon EKS worker nodes fail to join, and fixes the cause safely" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /nodemedic /usr/local/bin/nodemedic
COPY --from=build --chown=65532:65532 /state /var/lib/nodemedic
ENV NODEMEDIC_LOG__FORMAT=json \
    NODEMEDIC_AUDIT__PATH=/var/lib/nodemedic/audit.db
USER 65532:65532
VOLUME ["/var/lib/nodemedic"]
ENTRYPOINT ["/usr/local/bin/nodemedic"]
CMD ["run"]
