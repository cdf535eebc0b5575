#!/usr/bin/env bash
# `make run`: agentgov running against a cluster.
#   - KUBECONFIG set: use that cluster.
#   - otherwise: start the embedded control plane on loopback (e2e/controlplane).
# Then: install the CRDs, start the operator and the webhook as local processes, register the
# webhook (embedded cluster, or AGENTGOV_REGISTER_WEBHOOK=1), apply examples/ into a demo
# namespace, print the agents and their governance status, and keep running until Ctrl-C.
#
# Environment: AGENTGOV_RUN_NAMESPACE (default agentgov-demo), AGENTGOV_RUN_SECONDS (stop after
# N seconds instead of waiting for Ctrl-C), AGENTGOV_REGISTER_WEBHOOK (0/1), plus every variable
# of e2e/controlplane/cluster.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO}"
# The embedded default runs agentgov as Pods on a real node (e2e/run-node.sh); AGENTGOV_RUN_NODE=0
# keeps the control plane only, with the operator and webhook as local processes (below).
if [[ -z "${KUBECONFIG:-}" && "${AGENTGOV_RUN_NODE:-1}" != 0 ]]; then
  exec bash "${REPO}/e2e/run-node.sh"
fi
RUN_DIR="${REPO}/.cache/run"
DEMO_NS="${AGENTGOV_RUN_NAMESPACE:-agentgov-demo}"
SYSTEM_NS="agentgov-system"
mkdir -p "${RUN_DIR}/logs"

log() { printf '[run] %s\n' "$*" >&2; }

PIDS=()
STARTED_CLUSTER=0
WEBHOOK_REGISTERED=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  log "cleaning up"
  if [[ ${WEBHOOK_REGISTERED} == 1 ]]; then
    kubectl delete validatingwebhookconfiguration agentgov-webhook --ignore-not-found >/dev/null 2>&1 || true
  fi
  for pid in "${PIDS[@]}"; do kill "${pid}" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "${pid}" 2>/dev/null || true; done
  if [[ ${STARTED_CLUSTER} == 1 ]]; then
    AGENTGOV_CLUSTER_DIR="${RUN_DIR}/cluster" bash e2e/controlplane/cluster.sh down || true
  fi
  exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building agentgov (cargo build --bins; cargo's progress follows)"
cargo build --workspace --bins --locked
BIN="${CARGO_TARGET_DIR:-${REPO}/target}/debug"

if [[ -z "${KUBECONFIG:-}" ]]; then
  log "no KUBECONFIG: starting the embedded control plane on loopback"
  bash e2e/controlplane/build.sh
  export AGENTGOV_CLUSTER_DIR="${RUN_DIR}/cluster"
  STARTED_CLUSTER=1
  bash e2e/controlplane/cluster.sh up >/dev/null
  # shellcheck disable=SC1091
  source "${AGENTGOV_CLUSTER_DIR}/env"
  REGISTER_WEBHOOK="${AGENTGOV_REGISTER_WEBHOOK:-1}"
else
  log "using the cluster of KUBECONFIG=${KUBECONFIG}"
  command -v kubectl >/dev/null || export PATH="$(bash e2e/controlplane/build.sh --print-bin-dir):${PATH}"
  REGISTER_WEBHOOK="${AGENTGOV_REGISTER_WEBHOOK:-0}"
fi

log "installing the CRDs and the admission guards"
kubectl apply --server-side --force-conflicts -f crds/ -f crds/guards/ >/dev/null
kubectl wait --for condition=established --timeout=60s crd/agents.agentgov.dev crd/policybundles.agentgov.dev crd/agentpromotions.agentgov.dev crd/agentexceptions.agentgov.dev crd/clusterpolicybundles.agentgov.dev >/dev/null
kubectl create namespace "${SYSTEM_NS}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create namespace "${DEMO_NS}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

if [[ ! -f "${RUN_DIR}/keyring.json" ]]; then
  log "making a signing key ring in ${RUN_DIR}/keyring.json"
  "${BIN}/keygen" new --id "run-$(date +%Y%m%d)" > "${RUN_DIR}/keyring.json"
fi
"${BIN}/keygen" public "${RUN_DIR}/keyring.json" > "${RUN_DIR}/keyring-public.json"

log "starting the operator (logs: ${RUN_DIR}/logs/operator.log)"
"${BIN}/agentgov-operator" \
  --keyring-file "${RUN_DIR}/keyring.json" \
  --lease-namespace "${SYSTEM_NS}" \
  --metrics-listen 127.0.0.1:18080 \
  >"${RUN_DIR}/logs/operator.log" 2>&1 &
PIDS+=($!)

if [[ -x "${BIN}/agentgov-webhook" && -f "${REPO}/e2e/webhook.sh" && "${REGISTER_WEBHOOK}" == 1 ]]; then
  # shellcheck source=e2e/webhook.sh
  source "${REPO}/e2e/webhook.sh"
  start_webhook "${RUN_DIR}" "${BIN}"
  PIDS+=("${WEBHOOK_PID}")
  register_webhook "${RUN_DIR}"
  WEBHOOK_REGISTERED=1
else
  log "the webhook is not registered (not an embedded cluster, or AGENTGOV_REGISTER_WEBHOOK=0)"
fi

log "applying examples/ into namespace ${DEMO_NS}"
kubectl apply -n "${DEMO_NS}" -f examples/policybundle-default.yaml >/dev/null
# The webhook evaluates a governed agent's policy at admission: wait until one is in force.
kubectl wait -n "${DEMO_NS}" --for=condition=Ready --timeout=60s policybundle/default >/dev/null
for attempt in 1 2 3 4 5; do
  if kubectl apply -n "${DEMO_NS}" -f examples/agent-sandbox.yaml -f examples/agent-governed.yaml; then
    break
  fi
  [[ ${attempt} == 5 ]] && exit 1
  sleep 1
done

# The governed example is a promotion request: approve exactly its spec (as the cluster admin of
# this demo, who holds the verb promote). The API server stamps who approved.
spec_hash="$("${BIN}/proof" spec-hash examples/agent-governed.yaml)"
for attempt in 1 2 3 4 5; do
  # The webhook answers from its cache, which sees the new agent a moment later.
  if kubectl apply -n "${DEMO_NS}" -f - >/dev/null <<APPROVAL
apiVersion: agentgov.dev/v1alpha1
kind: AgentPromotion
metadata:
  name: invoice-auditor-${spec_hash:0:10}
spec:
  agent: invoice-auditor
  specHash: ${spec_hash}
  reason: make run demo
APPROVAL
  then
    break
  fi
  [[ ${attempt} == 5 ]] && exit 1
  sleep 1
done
for _ in $(seq 1 60); do
  pending=$(kubectl get agents -n "${DEMO_NS}" -o jsonpath='{range .items[*]}{.status.governanceStatus}{"\n"}{end}' | grep -c '^$' || true)
  [[ "${pending}" == 0 ]] && break
  sleep 0.5
done
echo
kubectl get agents -n "${DEMO_NS}"
echo
kubectl get policybundles -n "${DEMO_NS}"
echo
log "agentgov is running. Try: KUBECONFIG=${KUBECONFIG} kubectl get agents -A -w"
log "operator metrics: http://127.0.0.1:18080/metrics"
if [[ -n "${AGENTGOV_RUN_SECONDS:-}" ]]; then
  sleep "${AGENTGOV_RUN_SECONDS}"
else
  log "press Ctrl-C to stop and clean up"
  while true; do
    for pid in "${PIDS[@]}"; do
      if ! kill -0 "${pid}" 2>/dev/null; then
        log "a process stopped; see ${RUN_DIR}/logs"; exit 1
      fi
    done
    sleep 2
  done
fi
