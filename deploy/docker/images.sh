#!/usr/bin/env bash
# `make images`: the operator and webhook images as OCI archives, built without a daemon or a
# registry, from the static binaries (the same code the Dockerfiles build with musl; glibc's
# crt-static here, the build `make run` and the e2e suite share, which needs no musl toolchain).
#
# Each image is what deploy/docker/<name>.Dockerfile's final stage describes: the binary at
# /<name>, user 65532:65532, the ports it EXPOSEs, ENTRYPOINT ["/<name>"], on a distroless-like
# base (passwd/group with nonroot, /home/nonroot, /tmp, the CA bundle; no shell). The test
# e2e/tests/images.rs checks the archives against the Dockerfiles.
#
#   deploy/docker/images.sh [--profile release|debug]
#
# Output: .cache/images/agentgov-{operator,webhook}.oci.tar, named
#   ghcr.io/agentgov/agentgov-{operator,webhook}:<appVersion of charts/agentgov> (the chart's
#   default image), loadable with `ctr -n k8s.io images import`, `kind load image-archive` or
#   `skopeo copy oci-archive:<file> docker://<registry>/...`.
# Environment: AGENTGOV_IMAGE_PROFILE (default release), AGENTGOV_IMAGE_DIR (output dir),
# AGENTGOV_IMAGE_REPOSITORY (default ghcr.io/agentgov).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${REPO}"
log() { printf '[images] %s\n' "$*" >&2; }

PROFILE="${AGENTGOV_IMAGE_PROFILE:-release}"
if [[ "${1:-}" == "--profile" ]]; then PROFILE="$2"; shift 2; fi
case "${PROFILE}" in release|debug) ;; *) log "profile must be release or debug"; exit 2 ;; esac
OUT="${AGENTGOV_IMAGE_DIR:-${REPO}/.cache/images}"
REPOSITORY="${AGENTGOV_IMAGE_REPOSITORY:-ghcr.io/agentgov}"
TAG="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/agentgov/Chart.yaml)"
[[ -n "${TAG}" ]] || { log "no appVersion in charts/agentgov/Chart.yaml"; exit 1; }
TARGET_DIR="${REPO}/target/static"
TRIPLE="x86_64-unknown-linux-gnu"

bash hack/node-packages.sh # umoci and skopeo
t0=${SECONDS}
profile_flag=()
[[ "${PROFILE}" == release ]] && profile_flag=(--release)
log "building agentgov-operator and agentgov-webhook (${PROFILE}, statically linked; cargo's progress follows)"
# No incremental caches and no debug info in target/static (gigabytes less on a full disk;
# e2e/static.sh and make run build the same way, so they share the artifacts).
CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=0 RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="${TARGET_DIR}" \
  cargo build --locked "${profile_flag[@]}" --target "${TRIPLE}" -p agentgov-operator -p agentgov-webhook --bins
BIN="${TARGET_DIR}/${TRIPLE}/${PROFILE}"
log "binaries built in $(( SECONDS - t0 ))s"

image() { # image NAME PORT...
  local name=$1; shift
  local linkage args=()
  linkage="$(ldd "${BIN}/${name}" 2>&1 || true)"
  case "${linkage}" in
    *"statically linked"* | *"not a dynamic executable"*) ;;
    *) log "${name} is not statically linked: ${linkage}"; exit 1 ;;
  esac
  # Symbols and debug info are not shipped (the Dockerfiles' release profile has none either).
  local stripped="${OUT}/.${name}.stripped"
  strip -o "${stripped}" "${BIN}/${name}"
  local port
  for port in "$@"; do args+=(--expose "${port}/tcp"); done
  bash deploy/docker/oci-image.sh --nonroot-base --out "${OUT}/${name}.oci.tar" \
    --name "${REPOSITORY}/${name}:${TAG}" --user 65532:65532 --entrypoint "/${name}" \
    --file "${stripped}:/${name}:0755" "${args[@]}"
  rm -f -- "${stripped}"
}
mkdir -p "${OUT}"
image agentgov-operator 8080
image agentgov-webhook 8443 8080
printf '%s\n' "${PROFILE}" > "${OUT}/profile"
log "done in $(( SECONDS - t0 ))s: ${OUT}/agentgov-{operator,webhook}.oci.tar (${REPOSITORY}/*:${TAG}, ${PROFILE})"
log "load into kind: kind load image-archive ${OUT}/agentgov-operator.oci.tar (and the webhook's)"
