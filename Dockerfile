# syntax=docker/dockerfile:1
# The public build: compile in the Rust image, ship only the binary on distroless, as non-root,
# with no shell. BuildKit cache mounts keep the registry and the dependency builds between
# builds, so a change to src/ recompiles the operator alone. (On this project's machines there is
# no Docker engine; `make image` builds the same layout with buildah, and tests/incluster.rs
# checks that both agree on USER, ENTRYPOINT and EXPOSE.)
#
# Bases by version; pin their digests (FROM image:tag@sha256:...) where the image is published.
FROM docker.io/library/rust:1.95.0-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The manifest names the bench targets, so their files must exist for cargo to read it.
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin dbconn-operator \
    && cp target/release/dbconn-operator /dbconn-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /dbconn-operator /usr/local/bin/dbconn-operator
USER 65532:65532
# The HTTP server (/metrics, /healthz, /readyz); the chart's http.port.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dbconn-operator"]
