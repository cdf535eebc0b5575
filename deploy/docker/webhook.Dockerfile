# syntax=docker/dockerfile:1
# agentgov-webhook: a static binary (x86_64-unknown-linux-musl) on distroless/static, run as
# 65532 (nonroot). Build from the repository root:
#   docker build -f deploy/docker/webhook.Dockerfile -t agentgov-webhook .
# Pin the base images by digest in your registry mirror (docker buildx imagetools inspect).
# No container engine runs on the dev machines: `make images` (deploy/docker/images.sh) assembles
# the same image without a daemon (umoci) from the code linked statically with glibc's crt-static,
# as an OCI archive (kind load image-archive); e2e/tests/images.rs checks that it has this final
# stage's user, entrypoint, ports and files, and `make node-e2e` runs it as Pods with the chart.

FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# ring's C and assembly are compiled with musl-gcc; the result links nothing dynamically.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --release --locked --target x86_64-unknown-linux-musl \
      -p agentgov-webhook --bin agentgov-webhook \
 && cp target/x86_64-unknown-linux-musl/release/agentgov-webhook /agentgov-webhook

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /agentgov-webhook /agentgov-webhook
# 8443: admission (HTTPS); 8080: /metrics, /healthz, /readyz (plain HTTP)
EXPOSE 8443 8080
USER 65532:65532
ENTRYPOINT ["/agentgov-webhook"]
