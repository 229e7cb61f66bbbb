# Multi-stage build: compile in the Rust image, ship only the binary on distroless as non-root.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
RUN cargo build --release --locked --bin dbconn-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/dbconn-operator /usr/local/bin/dbconn-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/dbconn-operator"]
