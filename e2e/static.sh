#!/usr/bin/env bash
# The static binaries (what the images ship), tested as binaries: no container engine runs here.
#
# deploy/docker/*.Dockerfile build with the musl target, whose standard library cannot be
# installed on these machines; the same code is linked statically here with glibc's crt-static
# instead. Each binary must be statically linked and answer --help, and the operator and webhook
# e2e suites then run against the real control plane with these binaries.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO}"
TARGET_DIR="${REPO}/target/static"
TRIPLE="x86_64-unknown-linux-gnu"

echo "[static] building agentgov-operator and agentgov-webhook with crt-static" >&2
# No incremental caches and no debug info in target/static (deploy/docker/images.sh builds the
# same way, so they share the artifacts).
CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=0 RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="${TARGET_DIR}" \
  cargo build --locked -q --target "${TRIPLE}" -p agentgov-operator -p agentgov-webhook --bins
BIN="${TARGET_DIR}/${TRIPLE}/debug"
for name in agentgov-operator agentgov-webhook; do
  linkage=$(ldd "${BIN}/${name}" 2>&1 || true)
  case "${linkage}" in
    *"statically linked"* | *"not a dynamic executable"*) ;;
    *) echo "[static] ${name} is not statically linked: ${linkage}" >&2; exit 1 ;;
  esac
  "${BIN}/${name}" --help >/dev/null
  echo "[static] ${name}: statically linked; --help answers" >&2
done

AGENTGOV_OPERATOR_BIN="${BIN}/agentgov-operator" AGENTGOV_WEBHOOK_BIN="${BIN}/agentgov-webhook" \
  bash e2e/controlplane/cluster.sh exec -- \
  cargo test --locked -p agentgov-e2e --test operator --test webhook -- --test-threads=2
