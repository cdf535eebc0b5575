#!/usr/bin/env bash
# `make run` on the embedded default: the loopback control plane and a real node (e2e/node),
# agentgov installed with its Helm chart from images built here without a daemon, and the
# example agents running as Pods: a governed and a sandbox agent at work (`kubectl logs`), and a
# tampered Pod refused by the webhook. Runs until Ctrl-C (or AGENTGOV_RUN_SECONDS), then tears the
# node down and checks that the host is as it was (iptables, routes, links, mounts, cgroups,
# sysctls, paths, processes).
#
# The Go builds (control plane, node, helm) run in the background while cargo builds the static
# binaries in the foreground; the node starts as soon as its binaries are there, before cargo is
# done. Every line says how long the run has taken so far.
#
# Environment: AGENTGOV_RUN_NAMESPACE (default agentgov-demo), AGENTGOV_RUN_SECONDS, and the
# variables of e2e/node/node.sh and e2e/controlplane/cluster.sh. Needs root (the node).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO}"
RUN_DIR="${REPO}/.cache/run"
DEMO_NS="${AGENTGOV_RUN_NAMESPACE:-agentgov-demo}"
SYSTEM_NS="agentgov-system"
export AGENTGOV_NODE_DIR="${RUN_DIR}/node"
IMAGE_DIR="${REPO}/.cache/images/debug"
mkdir -p "${RUN_DIR}/logs"

log() { printf '[run %4ss] %s\n' "${SECONDS}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "the node needs root; run as root, or use AGENTGOV_RUN_NODE=0 (agentgov as local processes, no Pods)"

BEFORE="$(bash e2e/node/node.sh host-state)"
BG_PID=""
NODE_STARTED=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  log "cleaning up"
  if [[ -n "${BG_PID}" ]] && kill -0 "${BG_PID}" 2>/dev/null; then
    kill -TERM "${BG_PID}" 2>/dev/null || true
    wait "${BG_PID}" 2>/dev/null || true
  fi
  if [[ ${NODE_STARTED} == 1 || -f "${AGENTGOV_NODE_DIR}/.agentgov-node" ]]; then
    bash e2e/node/node.sh down || true
  fi
  local after
  after="$(bash e2e/node/node.sh host-state)"
  if [[ "${after}" == "${BEFORE}" ]]; then
    log "the host is as it was before (iptables, routes, links, mounts, cgroups, sysctls, paths, processes)"
  else
    log "the host differs from before the run (< before, > after):"
    diff <(printf '%s\n' "${BEFORE}") <(printf '%s\n' "${after}") >&2 || true
    (( rc != 0 )) || rc=1
  fi
  exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash hack/node-packages.sh

# 1. In the background: the Go builds, then the control plane and the node.
log "building the control plane, the node and helm from Go modules in the background (log: ${RUN_DIR}/logs/go.log; lines marked [go])"
(
  set -euo pipefail
  {
    bash e2e/controlplane/build.sh
    bash e2e/node/build.sh
    bash hack/tools.sh helm
  } 2>&1 | sed -u 's/^/[go] /' | tee "${RUN_DIR}/logs/go.log" | grep --line-buffered -E 'step .* done|still building|building|up to date|done in|ERROR' >&2
  bash e2e/node/node.sh up >/dev/null 2>"${RUN_DIR}/logs/node-up.log" \
    || { tail -20 "${RUN_DIR}/logs/node-up.log" >&2; exit 1; }
  printf '[run %4ss] control plane and node %s ready (kubectl: source %s/env)\n' \
    "${SECONDS}" "agentgov-node" "${AGENTGOV_NODE_DIR}" >&2
) &
BG_PID=$!
NODE_STARTED=1

# 2. In the foreground: the static binaries (cargo's progress) and the images.
log "building agentgov (cargo, static; its progress follows) and its images (no daemon)"
AGENTGOV_IMAGE_PROFILE=debug AGENTGOV_IMAGE_DIR="${IMAGE_DIR}" bash deploy/docker/images.sh
CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=0 RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="${REPO}/target/static" \
  cargo build --locked -q --target x86_64-unknown-linux-gnu -p agentgov-api --bin keygen --bin proof
KEYGEN="${REPO}/target/static/x86_64-unknown-linux-gnu/debug/keygen"
PROOF="${REPO}/target/static/x86_64-unknown-linux-gnu/debug/proof"

log "waiting for the background builds and the node"
wait "${BG_PID}" || die "the Go builds or the node failed (see ${RUN_DIR}/logs/go.log and node-up.log)"
BG_PID=""
# shellcheck disable=SC1091
source "${AGENTGOV_NODE_DIR}/env"
bash e2e/node/node.sh import "${IMAGE_DIR}/agentgov-operator.oci.tar" "${IMAGE_DIR}/agentgov-webhook.oci.tar"

# 3. agentgov with its chart.
if [[ ! -f "${RUN_DIR}/keyring.json" ]]; then
  "${KEYGEN}" new --id "run-$(date +%Y%m%d)" > "${RUN_DIR}/keyring.json"
fi
HELM="$(bash hack/tools.sh --print-bin-dir)/helm"
kubectl create namespace "${SYSTEM_NS}" >/dev/null
kubectl label namespace "${SYSTEM_NS}" pod-security.kubernetes.io/enforce=restricted >/dev/null
log "helm install agentgov charts/agentgov (2 operator and 2 webhook Pods)"
"${HELM}" install agentgov charts/agentgov --namespace "${SYSTEM_NS}" --wait --timeout 3m \
  --set signingKeys.create=true --set-file signingKeys.keyring="${RUN_DIR}/keyring.json" \
  --set-file webhook.clientCA.pem="${AGENTGOV_WEBHOOK_CLIENT_CA}" --set logFormat=plain >/dev/null
log "agentgov is running"
kubectl get pods -n "${SYSTEM_NS}" -o wide

# 4. The examples, and the agents at work as Pods.
kubectl create namespace "${DEMO_NS}" >/dev/null
kubectl apply -n "${DEMO_NS}" -f examples/policybundle-default.yaml >/dev/null
kubectl wait -n "${DEMO_NS}" --for=condition=Ready --timeout=60s policybundle/default >/dev/null
kubectl apply -n "${DEMO_NS}" -f examples/agent-sandbox.yaml -f examples/agent-governed.yaml
# The governed example is a promotion request: approve exactly its spec (as this demo's cluster
# admin, who holds the verb promote); the API server stamps who approved.
spec_hash="$("${PROOF}" spec-hash examples/agent-governed.yaml)"
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
    log "approved invoice-auditor's spec ${spec_hash:0:12}... (AgentPromotion)"
    break
  fi
  [[ ${attempt} == 5 ]] && die "the AgentPromotion for invoice-auditor was refused"
  sleep 1
done
for _ in $(seq 1 120); do
  pending=$(kubectl get agents -n "${DEMO_NS}" -o jsonpath='{range .items[*]}{.status.governanceStatus}{"\n"}{end}' | grep -c '^$' || true)
  [[ "${pending}" == 0 ]] && break
  sleep 0.5
done
echo
kubectl get agents -n "${DEMO_NS}"
echo

agent_pod() { # agent_pod NAME AGENT WORK [privileged]
  cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {agentgov.dev/agent: $2}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: agent
      image: ${AGENTGOV_TEST_IMAGE}
      imagePullPolicy: Never
      command: [sh, -c, 'i=0; while true; do i=\$((i+1)); echo "\$(date -u +%H:%M:%S) $2: $3 \$i"; sleep 5; done']
      securityContext: {allowPrivilegeEscalation: ${4:-false}, privileged: ${4:-false}, capabilities: {drop: [ALL]}}
EOF
}
# A governed agent runs once the operator has signed its proof.
for _ in $(seq 1 60); do
  governed=$(kubectl get agent -n "${DEMO_NS}" invoice-auditor -o jsonpath='{.status.governanceStatus}')
  [[ "${governed}" == GOVERNED_* ]] && break
  sleep 0.5
done
log "running the agents as Pods (each Pod's admission is the webhook's)"
running=(research-scratchpad)
agent_pod research-scratchpad research-scratchpad "summarised paper" | kubectl apply -n "${DEMO_NS}" -f - \
  || log "the sandbox agent's Pod was refused"
if agent_pod invoice-auditor invoice-auditor "checked invoice batch" | kubectl apply -n "${DEMO_NS}" -f -; then
  running+=(invoice-auditor)
else
  log "invoice-auditor (${governed:-no status}) has no proof in force yet, so its Pod is refused: see its status (kubectl describe agent)"
fi
log "a tampered Pod: it claims research-scratchpad but asks for a privileged container"
if agent_pod research-scratchpad-tampered research-scratchpad "escaped" true | kubectl apply -n "${DEMO_NS}" -f - 2>"${RUN_DIR}/logs/tampered.log"; then
  die "the tampered Pod was admitted"
fi
sed 's/^/    /' "${RUN_DIR}/logs/tampered.log" >&2
kubectl wait -n "${DEMO_NS}" --for=condition=Ready --timeout=60s pod --all >/dev/null || true
sleep 1
echo
kubectl get pods -n "${DEMO_NS}" -o wide
for pod in "${running[@]}"; do
  echo
  log "kubectl logs -n ${DEMO_NS} ${pod}:"
  kubectl logs -n "${DEMO_NS}" "${pod}" 2>&1 | tail -3 || true
done
echo
log "agentgov runs on the node. In another shell: source ${AGENTGOV_NODE_DIR}/env; kubectl get agents,pods -A"
log "total $(( SECONDS ))s from make run to here"
if [[ -n "${AGENTGOV_RUN_SECONDS:-}" ]]; then
  sleep "${AGENTGOV_RUN_SECONDS}"
else
  log "press Ctrl-C to stop and clean up"
  while true; do sleep 3600; done
fi
