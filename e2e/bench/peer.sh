#!/usr/bin/env bash
# agentgov's admission webhook beside a peer, OPA Gatekeeper: the same load generator, TLS, Pod
# AdmissionReview bodies and connection counts, in the same run, on a throwaway loopback control
# plane. Prints a Markdown section (versions, what each checks, a table of requests/s, p50, p99,
# errors and CPU per review) on stdout; progress on stderr.
#
#   1. Gatekeeper's manager and CRDs from Go modules (e2e/bench/gatekeeper-build.sh, cached
#      under .cache/peers/gatekeeper-<version>/; a warm run does nothing).
#   2. The release binaries: agentgov-webhook and agentgov-operator (as deployed), peer-bench
#      (the harness, e2e/src/bin/peer-bench.rs) and admission-load (the load generator).
#   3. Under e2e/controlplane/cluster.sh exec: peer-bench signs a governed agent with the
#      operator, starts both webhooks (output into pipes), installs Gatekeeper's CRDs, Config,
#      ConstraintTemplate and Constraint (e2e/bench/gatekeeper/), checks that each webhook
#      answers correctly (for Gatekeeper: the governed agent's Pod allowed, a Pod of a missing
#      agent and a Pod without the agent label denied), loads them in turn, then stops
#      agentgov with SIGTERM and checks that every decision it counted is a line of its log.
#
# Fails (non-zero, with the reason) when Gatekeeper cannot be built, does not start, or does
# not answer correctly; no table is printed then. A table with errors under load, or with
# decision lines missing from agentgov's log, is printed and the script fails after it.
#
# Environment: AGENTGOV_PEER_CONNECTIONS (default 1,8,32), AGENTGOV_PEER_HTTP (1.1,2),
# AGENTGOV_PEER_DURATION (seconds measured per row, 5), AGENTGOV_PEER_WARMUP (1),
# AGENTGOV_PEER_ROUNDS (3), AGENTGOV_PEER_FIXTURE (e2e/bench/fixtures/pod-review-deployment.json),
# GATEKEEPER_VERSION (see gatekeeper-build.sh).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${REPO}"

log() { printf '[peer] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

FIXTURE="${AGENTGOV_PEER_FIXTURE:-${REPO}/e2e/bench/fixtures/pod-review-deployment.json}"
[[ -s "${FIXTURE}" ]] || die "the Pod AdmissionReview fixture ${FIXTURE} is missing (admission-load capture --out FILE makes it, under cluster.sh exec)"

log "Gatekeeper: build or reuse"
bash e2e/bench/gatekeeper-build.sh || die "Gatekeeper could not be built (see above)"
GK_DIR="$(bash e2e/bench/gatekeeper-build.sh --print-dir)"
[[ -x "${GK_DIR}/bin/manager" ]] || die "no Gatekeeper manager in ${GK_DIR}/bin"

log "agentgov: release binaries"
cargo build --release --locked -q -p agentgov-operator -p agentgov-webhook -p agentgov-e2e \
  --bin agentgov-operator --bin agentgov-webhook --bin peer-bench --bin admission-load \
  || die "cargo build --release failed"
BIN="${REPO}/target/release"
for b in agentgov-webhook agentgov-operator peer-bench admission-load; do
  [[ -x "${BIN}/${b}" ]] || die "missing ${BIN}/${b}"
done

log "running both webhooks on a loopback control plane"
AGENTGOV_WEBHOOK_BIN="${BIN}/agentgov-webhook" \
AGENTGOV_OPERATOR_BIN="${BIN}/agentgov-operator" \
  bash e2e/controlplane/cluster.sh exec -- "${BIN}/peer-bench" \
    --gatekeeper-dir "${GK_DIR}" \
    --load "${BIN}/admission-load" \
    --fixture "${FIXTURE}" \
    --connections "${AGENTGOV_PEER_CONNECTIONS:-1,8,32}" \
    --http "${AGENTGOV_PEER_HTTP:-1.1,2}" \
    --duration "${AGENTGOV_PEER_DURATION:-5}" \
    --warmup "${AGENTGOV_PEER_WARMUP:-1}" \
    --rounds "${AGENTGOV_PEER_ROUNDS:-3}" \
  || die "the comparison failed (see above; logs in .cache/e2e-logs/peer-bench-*)"
