#!/usr/bin/env bash
# Smoke test of the loopback control plane. Run it inside the cluster env:
#   e2e/controlplane/cluster.sh exec -- e2e/controlplane/smoke.sh
# Checks: namespaces, CRD + custom resource, a ValidatingWebhookConfiguration
# that the API server calls with the webhook client certificate (checked with
# `openssl s_server`), Deployment -> ReplicaSet -> Pods, garbage collection,
# namespace deletion.
# shellcheck disable=SC2016 # the bash -c snippets are single-quoted on purpose
set -euo pipefail

: "${KUBECONFIG:?run this through cluster.sh exec}"
: "${AGENTGOV_WEBHOOK_HOSTPORT:?run this through cluster.sh exec}"

log() { printf '[smoke] %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
k() { kubectl --request-timeout=10s "$@"; }

retry() { # retry SECONDS CMD... : until CMD succeeds
  local deadline=$(( SECONDS + $1 )); shift
  until "$@"; do
    (( SECONDS < deadline )) || return 1
    sleep 0.5
  done
}

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [[ -n "${SERVER_PID}" ]]; then kill "${SERVER_PID}" 2>/dev/null || true; wait "${SERVER_PID}" 2>/dev/null || true; fi
  rm -rf -- "${WORK}"
}
trap cleanup EXIT

log "namespaces"
k get namespaces

log "CRD + custom resource"
k apply -f - <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.agentgov.dev
spec:
  group: smoke.agentgov.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
EOF
k wait --for=condition=Established --timeout=30s crd/widgets.smoke.agentgov.dev

log "ValidatingWebhookConfiguration -> https://${AGENTGOV_WEBHOOK_HOSTPORT} (failurePolicy Ignore)"
# A TLS server on the webhook address that requires a client certificate
# signed by the webhook client CA; its log shows the certificate it got.
openssl s_server -accept "${AGENTGOV_WEBHOOK_HOSTPORT}" -naccept 1 -www \
  -cert "${AGENTGOV_WEBHOOK_SERVING_CERT}" -key "${AGENTGOV_WEBHOOK_SERVING_KEY}" \
  -CAfile "${AGENTGOV_WEBHOOK_CLIENT_CA}" -Verify 1 </dev/null >"${WORK}/s_server.log" 2>&1 &
SERVER_PID=$!
k apply -f - <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: smoke-widgets
webhooks:
- name: widgets.smoke.agentgov.dev
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 5
  clientConfig:
    url: https://${AGENTGOV_WEBHOOK_HOSTPORT}/validate
    caBundle: $(openssl base64 -A < "${AGENTGOV_CA_CRT}")
  rules:
  - apiGroups: ["smoke.agentgov.dev"]
    apiVersions: ["v1"]
    operations: ["CREATE"]
    resources: ["widgets"]
EOF
# The webhook configuration is picked up asynchronously; create until called.
retry 30 bash -c '
  k() { kubectl --request-timeout=10s "$@"; }
  i=$(( $(cat "$1/n" 2>/dev/null || echo 0) + 1 )); echo "$i" > "$1/n"
  k create -f - >/dev/null <<EOF
apiVersion: smoke.agentgov.dev/v1
kind: Widget
metadata: {name: w$i, namespace: default}
spec: {size: 1}
EOF
  grep -q "CN *= *agentgov-apiserver-webhook-client" "$1/s_server.log"
' _ "${WORK}" || { cat "${WORK}/s_server.log" >&2; fail "the API server did not call the webhook with the client certificate"; }
grep -q "verify return:1" "${WORK}/s_server.log" || fail "client certificate did not verify against AGENTGOV_WEBHOOK_CLIENT_CA"
log "webhook was called with: $(grep -m1 'depth=0' "${WORK}/s_server.log")"
k get widgets
k delete validatingwebhookconfiguration smoke-widgets

log "Deployment -> ReplicaSet -> Pods (Pending: there is no scheduler/kubelet)"
k get serviceaccount default
retry 30 k get configmap kube-root-ca.crt >/dev/null || fail "root-ca-cert-publisher did not create kube-root-ca.crt"
k create deployment smoke --image=registry.invalid/smoke:1 --replicas=2
retry 60 bash -c '[[ $(kubectl get pods -l app=smoke --no-headers 2>/dev/null | wc -l) -eq 2 ]]' \
  || fail "deployment did not create 2 pods"
k get deployment,replicaset,pods -l app=smoke

log "garbage collection (delete Deployment -> ReplicaSet and Pods go away)"
k delete deployment smoke --wait=false
retry 60 bash -c '[[ -z $(kubectl get replicasets,pods -l app=smoke --no-headers 2>/dev/null) ]]' \
  || fail "garbage collector did not delete the ReplicaSet/Pods"

log "namespace deletion"
k create namespace smoke-ns
k create configmap x -n smoke-ns --from-literal=a=b
k delete namespace smoke-ns --timeout=60s

log "OK"
