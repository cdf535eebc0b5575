#!/usr/bin/env bash
# kubeconform on every rendered values variant of the chart, against JSON schemas generated from
# the running (loopback) API server's OpenAPI: the Kubernetes kinds of this very version and our
# CRDs, no download. Run under e2e/controlplane/cluster.sh exec (needs KUBECONFIG).
# The prometheus-operator and cert-manager kinds have no CRDs here: they are skipped by
# kubeconform and checked by check_monitoring.py and check_rendered.py instead. So is the
# CustomResourceDefinition the chart renders with policyReports.enabled (openapi2jsonschema makes
# no schema of the recursive CRD type): it is the pinned upstream file byte for byte
# (policyreport-crd.sh --check-chart) and the API server itself accepts it in the e2e tests.
set -euo pipefail
: "${KUBECONFIG:?run this under e2e/controlplane/cluster.sh exec}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${REPO}"
export PATH="${REPO}/.cache/tools/bin:${PATH}"
for tool in helm kubeconform openapi2jsonschema; do
  command -v "${tool}" >/dev/null || { echo "${tool} is missing: run hack/tools.sh" >&2; exit 1; }
done
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
NS=agentgov-system

kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for condition=established --timeout=60s crd/agents.agentgov.dev crd/policybundles.agentgov.dev >/dev/null
# The API server publishes a new CRD's schema in its OpenAPI a moment after Established.
for _ in $(seq 1 50); do
  kubectl get --raw /openapi/v2 >"${WORK}/openapi.json"
  grep -q '"dev.agentgov.v1alpha1.PolicyBundle"' "${WORK}/openapi.json" && break
  sleep 0.2
done
# openapi2jsonschema resolves its references against the working directory.
(cd / && openapi2jsonschema -o "${WORK#/}/schemas" --kubernetes --stand-alone --strict --expanded \
  "file://${WORK}/openapi.json" >"${WORK}/openapi2jsonschema.log" 2>&1)
for kind in deployment-apps-v1 agent-agentgov-v1alpha1 validatingwebhookconfiguration-admissionregistration-v1; do
  [[ -f "${WORK}/schemas/${kind}.json" ]] || { cat "${WORK}/openapi2jsonschema.log" >&2; echo "no schema ${kind}" >&2; exit 1; }
done

validate() {
  kubeconform -strict -summary -skip PrometheusRule,ServiceMonitor,Certificate,Issuer,CustomResourceDefinition \
    -schema-location "${WORK}/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}

failed=0
for values in e2e/chart/values/*.yaml; do
  variant="$(basename "${values}" .yaml)"
  args=(-f e2e/chart/values/minimal.yaml)
  [[ "${variant}" == minimal ]] || args+=(-f "${values}")
  helm template agentgov charts/agentgov --namespace "${NS}" "${args[@]}" >"${WORK}/${variant}.yaml"
  if summary=$(validate "${WORK}/${variant}.yaml" 2>&1); then
    echo "ok   ${variant}: kubeconform ${summary##*Summary: }"
  else
    echo "FAIL ${variant}: ${summary}"; failed=1
  fi
done
for example in examples/*.yaml; do
  if ! validate "${example}" >"${WORK}/example.log" 2>&1; then
    cat "${WORK}/example.log"; echo "FAIL ${example}"; failed=1
  fi
done
echo "ok   examples: kubeconform"

# The check can fail: a typo in a rendered Deployment and a bad Agent are refused.
sed 's/^  replicas: 2$/  replicas: two/' "${WORK}/minimal.yaml" >"${WORK}/broken.yaml"
if validate "${WORK}/broken.yaml" >/dev/null 2>&1; then echo "FAIL kubeconform accepted replicas: two"; failed=1; fi
sed 's/roleClass: compliance/roleClass: wizard/' examples/agent-governed.yaml >"${WORK}/bad-agent.yaml"
if validate "${WORK}/bad-agent.yaml" >/dev/null 2>&1; then echo "FAIL kubeconform accepted roleClass: wizard"; failed=1; fi
[[ ${failed} == 0 ]] && echo "ok   kubeconform refuses a broken Deployment and a bad Agent"
exit "${failed}"
