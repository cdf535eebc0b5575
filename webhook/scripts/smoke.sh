#!/usr/bin/env bash
# Live check of agentgov-webhook against a real kube-apiserver (the loopback control plane):
#
#   e2e/controlplane/cluster.sh exec -- webhook/scripts/smoke.sh
#
# Builds the webhook, keygen and the fake_operator example (stand-in for the operator's status
# writes), starts the webhook with mTLS on $AGENTGOV_WEBHOOK_HOSTPORT, registers
# deploy/webhook/validating-webhook-configuration.yaml, and checks decisions end to end:
# sandbox/governed Agents, promote authorization (SubjectAccessReview), policy denies,
# agent Pods (the seven checks), key revocation without restart, metrics, graceful shutdown.
set -euo pipefail

: "${KUBECONFIG:?run this through e2e/controlplane/cluster.sh exec}"
: "${AGENTGOV_WEBHOOK_HOSTPORT:?run this through e2e/controlplane/cluster.sh exec}"

REPO="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
TARGET="${CARGO_TARGET_DIR:-${REPO}/target}"
METRICS_PORT="${AGENTGOV_WEBHOOK_METRICS_PORT:-18080}"
NS=smoke-agents

log() { printf '[webhook-smoke] %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  if [[ -f "${WORK}/webhook.log" ]]; then tail -n 30 "${WORK}/webhook.log" >&2; fi
  exit 1
}
k() { kubectl --request-timeout=15s "$@"; }
retry() { # retry SECONDS CMD...
  local deadline=$(( SECONDS + $1 )); shift
  until "$@"; do (( SECONDS < deadline )) || return 1; sleep 0.5; done
}

WORK="$(mktemp -d)"
WEBHOOK_PID=""
cleanup() {
  if [[ -n "${WEBHOOK_PID}" ]]; then kill "${WEBHOOK_PID}" 2>/dev/null || true; wait "${WEBHOOK_PID}" 2>/dev/null || true; fi
  k delete validatingwebhookconfiguration agentgov-webhook --ignore-not-found >/dev/null 2>&1 || true
  rm -rf -- "${WORK}"
}
trap cleanup EXIT

PASSED=0
# accepts DESC CMD... : CMD must succeed
accepts() {
  local desc=$1; shift
  if "$@" >"${WORK}/out" 2>&1; then PASSED=$((PASSED + 1)); log "ok: ${desc}"
  else cat "${WORK}/out" >&2; fail "${desc}: expected success"; fi
}
# rejects DESC CODE CMD... : CMD must fail with CODE in its message
rejects() {
  local desc=$1 code=$2; shift 2
  if "$@" >"${WORK}/out" 2>&1; then cat "${WORK}/out" >&2; fail "${desc}: expected ${code}, got success"; fi
  if grep -q -- "${code}" "${WORK}/out"; then PASSED=$((PASSED + 1)); log "ok: ${desc} (${code})"
  else cat "${WORK}/out" >&2; fail "${desc}: expected ${code}"; fi
}

log "building"
(cd "${REPO}" && cargo build -q -p agentgov-webhook --bin agentgov-webhook --example fake_operator && cargo build -q -p agentgov-api --bin keygen)
WEBHOOK="${TARGET}/debug/agentgov-webhook"
FAKE="${TARGET}/debug/examples/fake_operator"
KEYGEN="${TARGET}/debug/keygen"

log "CRDs"
k apply -f "${REPO}/crds/agents.agentgov.dev.yaml" -f "${REPO}/crds/policybundles.agentgov.dev.yaml" >/dev/null
k wait --for=condition=Established --timeout=30s crd/agents.agentgov.dev crd/policybundles.agentgov.dev >/dev/null

log "key ring (verification-only for the webhook)"
"${KEYGEN}" new --id smoke-1 >"${WORK}/ring.json"
"${KEYGEN}" public "${WORK}/ring.json" >"${WORK}/public.json"

log "starting the webhook on ${AGENTGOV_WEBHOOK_HOSTPORT}"
"${WEBHOOK}" \
  --listen "${AGENTGOV_WEBHOOK_HOSTPORT}" \
  --metrics-listen "127.0.0.1:${METRICS_PORT}" \
  --tls-cert-file "${AGENTGOV_WEBHOOK_SERVING_CERT}" \
  --tls-key-file "${AGENTGOV_WEBHOOK_SERVING_KEY}" \
  --client-ca-file "${AGENTGOV_WEBHOOK_CLIENT_CA}" \
  --keyring-file "${WORK}/public.json" \
  --reload-interval 500ms \
  --shutdown-grace 1s \
  >"${WORK}/webhook.log" 2>&1 &
WEBHOOK_PID=$!
ready() { curl -fsS "http://127.0.0.1:${METRICS_PORT}/readyz" >/dev/null 2>&1; }
retry 60 ready || fail "webhook never became ready"
log "ready"

log "registering the ValidatingWebhookConfiguration"
# shellcheck disable=SC2016 # envsubst gets the variable names, not their values
WEBHOOK_URL="https://${AGENTGOV_WEBHOOK_HOSTPORT}" CA_BUNDLE="$(base64 -w0 "${AGENTGOV_CA_CRT}")" \
  envsubst '${WEBHOOK_URL} ${CA_BUNDLE}' <"${REPO}/deploy/webhook/validating-webhook-configuration.yaml" \
  | k apply -f - >/dev/null

k create namespace "${NS}" >/dev/null
retry 30 k -n "${NS}" get serviceaccount default >/dev/null 2>&1 || fail "no default ServiceAccount"
# mallory may write Agents (RBAC) but holds no `promote`.
k -n "${NS}" create role agent-writer --verb=get,list,create,update,patch --resource=agents.agentgov.dev >/dev/null
k -n "${NS}" create rolebinding mallory-agent-writer --role=agent-writer --user=mallory >/dev/null

sandbox() { # sandbox NAME EXTERNAL_CALLS
  cat <<EOF
apiVersion: agentgov.dev/v1alpha1
kind: Agent
metadata: {name: $1, namespace: ${NS}}
spec:
  version: 0.1.0
  roleClass: ideation
  mode: sandbox
  anatomy:
    reasoning: {model: m, temperature: 0.5}
    containment: {externalCalls: $2, persistentWrites: false}
  sandbox: {ttlSeconds: 3600}
EOF
}
governed() { # governed NAME TEMPERATURE
  sed -e "s/^  name: invoice-auditor/  name: $1/" -e "s/temperature: 0.2/temperature: $2/" \
    "${REPO}/examples/agent-governed.yaml"
}
pod() { # pod NAME AGENT [EXTRA_VOLUME_YAML]
  cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  namespace: ${NS}
  labels: {agentgov.dev/agent: "$2"}
spec:
  containers: [{name: agent, image: registry.invalid/agent:1}]
${3:-}
EOF
}
# m NAME < MANIFEST: keep a manifest in a file, so that a retried command re-reads it.
m() { cat >"${WORK}/$1.yaml"; printf '%s\n' "${WORK}/$1.yaml"; }
apply() { local file=$1; shift; k -n "${NS}" apply -f "${file}" "$@"; }

accepts "sandbox agent" apply "$(m f1 < <(sandbox lab false))"
rejects "sandbox agent with external calls" ADMISSION_DENY_CONTAINMENT_VIOLATION apply "$(m f2 < <(sandbox leaky true))"
rejects "governed agent, no policy in force" ADMISSION_DENY_POLICY apply "$(m f3 < <(governed auditor 0.2))"

log "policy bundle, with the operator's status faked"
k -n "${NS}" apply -f "${REPO}/examples/policybundle-default.yaml" >/dev/null
PATCH="$(k -n "${NS}" get policybundle default -o json | "${FAKE}" bundle-status)"
k -n "${NS}" patch policybundle default --subresource=status --type=merge -p "${PATCH}" >/dev/null
POLICY_HASH="$(k -n "${NS}" get policybundle default -o jsonpath='{.status.activeHash}')"

# Wait until the webhook has the policy in force (a dry run passes), then judge.
accepts "policy in force" retry 10 apply "$(m policy-probe < <(governed auditor 0.2))" --dry-run=server
rejects "governed agent by a user without promote" ADMISSION_DENY_UNAUTHORIZED \
  apply "$(m f4 < <(governed auditor 0.2))" --as=mallory
rejects "governed agent breaking policy" "temperature 0.9 is above the limit 0.3" \
  apply "$(m f5 < <(governed hot 0.9))"
accepts "governed agent by an admin" apply "$(m f6 < <(governed auditor 0.2))"
accepts "dry-run sandbox agent" apply "$(m f7 < <(sandbox lab-dry false))" --dry-run=server

rejects "pod of an unknown agent" ADMISSION_DENY_AGENT_NOT_FOUND apply "$(m f8 < <(pod p-ghost ghost))"
rejects "pod of an unknown agent, dry run" ADMISSION_DENY_AGENT_NOT_FOUND apply "$(m f9 < <(pod p-ghost ghost))" --dry-run=server
rejects "pod with an empty agent label" ADMISSION_DENY_AGENT_NOT_FOUND apply "$(m f10 < <(pod p-empty ""))"
accepts "pod of the sandbox agent" retry 10 apply "$(m f11 < <(pod p-lab lab))"
rejects "sandbox pod with a hostPath volume" ADMISSION_DENY_CONTAINMENT_VIOLATION \
  apply "$(m f12 < <(pod p-lab-host lab "  volumes: [{name: h, hostPath: {path: /tmp}}]"))"
rejects "pod of an unsigned governed agent" ADMISSION_DENY_PROOF_MISSING apply "$(m f13 < <(pod p-auditor auditor))"

log "signing the governed agent (the operator's job)"
PATCH="$(k -n "${NS}" get agent auditor -o json | "${FAKE}" sign-agent "${WORK}/ring.json" "${POLICY_HASH}")"
k -n "${NS}" patch agent auditor --subresource=status --type=merge -p "${PATCH}" >/dev/null
accepts "pod of a signed governed agent" retry 10 apply "$(m f14 < <(pod p-auditor auditor))"
accepts "metadata-only update of a governed agent by mallory" \
  k -n "${NS}" label agent auditor --as=mallory team=finance
accepts "pod without the agent label" k -n "${NS}" run plain --image=registry.invalid/plain:1 --restart=Never

log "revoking the signing key (no restart)"
python3 - "${WORK}/public.json" <<'EOF'
import json, sys
p = sys.argv[1]
ring = json.load(open(p))
ring["revoked"] = ["smoke-1"]
json.dump(ring, open(p + ".new", "w"))
EOF
mv "${WORK}/public.json.new" "${WORK}/public.json"
reloaded() { curl -fsS "http://127.0.0.1:${METRICS_PORT}/metrics" | grep -q 'keyring_reload_total{result="success"} 1'; }
retry 10 reloaded || fail "the key ring was not reloaded"
rejects "pod after revocation" ADMISSION_DENY_SIGNER_REVOKED apply "$(m f15 < <(pod p-auditor-2 auditor))"

log "metrics"
METRICS="$(curl -fsS "http://127.0.0.1:${METRICS_PORT}/metrics")"
grep -q '^agent_starts_allowed_total [1-9]' <<<"${METRICS}" || fail "no allowed count"
grep -q 'agent_starts_denied_total{reason="ADMISSION_DENY_AGENT_NOT_FOUND"}' <<<"${METRICS}" || fail "no denied count"
grep -q 'keyring_reload_total{result="success"} 1' <<<"${METRICS}" || fail "no key ring reload"
grep -q '"code":"ADMISSION_DENY_UNAUTHORIZED"' "${WORK}/webhook.log" || fail "no JSON decision line"
PASSED=$((PASSED + 1)); log "ok: metrics and decision logs"

log "graceful shutdown"
kill -TERM "${WEBHOOK_PID}"
retry 20 bash -c "! kill -0 ${WEBHOOK_PID} 2>/dev/null" || fail "webhook did not stop"
wait "${WEBHOOK_PID}" || fail "webhook exited non-zero"
WEBHOOK_PID=""
PASSED=$((PASSED + 1)); log "ok: graceful shutdown"

echo "webhook smoke: ${PASSED} passed, 0 failed"
