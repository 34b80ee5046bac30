# nodemedic container image: build with
#   docker build -t nodemedic .
# Multi-stage: the build stage compiles a release binary; the runtime stage is distroless
# (glibc, CA certificates, no shell) and runs as the non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
# Without the `demo` feature: no lab worlds and no emulator launcher in the production binary.
RUN cargo build --release --locked --bin nodemedic \
    && strip target/release/nodemedic \
    && mkdir -p /state

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /src/target/release/nodemedic /usr/local/bin/nodemedic
COPY --from=build --chown=65532:65532 /state /var/lib/nodemedic
ENV NODEMEDIC_LOG__FORMAT=json \
    NODEMEDIC_AUDIT__PATH=/var/lib/nodemedic/audit.db
USER 65532:65532
VOLUME ["/var/lib/nodemedic"]
ENTRYPOINT ["/usr/local/bin/nodemedic"]
CMD ["run"]
