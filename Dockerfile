# Multi-stage build of a static binary into an empty image.
# Without a Docker engine, scripts/image builds the same image with buildah from a binary
# built on the host (see the README).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu -p msp-server \
 && cp target/x86_64-unknown-linux-gnu/release/metrics-server-prom /metrics-server-prom

FROM scratch
COPY --from=build /metrics-server-prom /metrics-server-prom
USER 65534:65534
EXPOSE 9100
ENV MSP_LISTEN=0.0.0.0:9100
ENTRYPOINT ["/metrics-server-prom"]
