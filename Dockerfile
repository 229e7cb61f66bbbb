# Multi-stage build: compile in the Rust image, ship only the binary on distroless as non-root.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The manifest names the bench target, so its file must exist for cargo to read the manifest.
COPY benches ./benches
RUN cargo build --release --locked --bin dbconn-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/dbconn-operator /usr/local/bin/dbconn-operator
USER 65532:65532
# The HTTP server (/metrics, /healthz, /readyz); the chart's http.port.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dbconn-operator"]
