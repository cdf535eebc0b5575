#!/usr/bin/env bash
# Chart tests that need no cluster (the cluster part is e2e/tests/chart.rs; the chart's CRDs are
# written by crdgen and checked by `make crd-check`):
#   1. for each values variant in e2e/chart/values/ (each on top of minimal.yaml):
#      helm lint --strict, helm template, and check_rendered.py (security settings of every
#      container, least-privilege RBAC, webhook registration, replicas, PDBs, certificates)
#   2. values that must be refused are refused, with the message a user needs
#   3. alerts and dashboard: metric names exist in the binaries, PromQL parses
#   4. alert rules: promtool check rules on the rendered PrometheusRule's groups, and
#      promtool test rules (e2e/chart/*_test.yaml: which alerts fire on which series)
#   5. the Argo CD health check against example statuses (lua5.4)
# Needs the tools of hack/tools.sh; fails (never skips) without them. Exits non-zero on failure.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${REPO}"
BIN="$(bash hack/tools.sh --print-bin-dir)"
CHART=charts/agentgov
NS=agentgov-system
OUT="$(mktemp -d)"
trap 'rm -rf "${OUT}"' EXIT
for tool in helm promql promtool; do
  [[ -x "${BIN}/${tool}" ]] || { echo "${BIN}/${tool} is missing: run hack/tools.sh" >&2; exit 1; }
done
export PATH="${BIN}:${PATH}"

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "ok   $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $*"; }

for values in e2e/chart/values/*.yaml; do
  variant="$(basename "${values}" .yaml)"
  args=(-f e2e/chart/values/minimal.yaml)
  [[ "${variant}" == minimal ]] || args+=(-f "${values}")
  if ! helm lint --strict --quiet "${CHART}" --namespace "${NS}" "${args[@]}" >"${OUT}/lint.log" 2>&1; then
    cat "${OUT}/lint.log"; fail "${variant}: helm lint --strict"; continue
  fi
  if ! helm template agentgov "${CHART}" --namespace "${NS}" "${args[@]}" >"${OUT}/${variant}.yaml" 2>"${OUT}/template.log"; then
    cat "${OUT}/template.log"; fail "${variant}: helm template"; continue
  fi
  if python3 e2e/chart/check_rendered.py "${NS}" "${OUT}/${variant}.yaml"; then
    pass "${variant}: lint, template, security and structure ($(grep -c '^kind:' "${OUT}/${variant}.yaml") objects)"
  else
    fail "${variant}: check_rendered.py"
  fi
done

# refused VALUES... MESSAGE: helm template must fail and say MESSAGE.
refused() {
  local message="$1"; shift
  if helm template agentgov "${CHART}" --namespace "${NS}" "$@" >/dev/null 2>"${OUT}/refused.log"; then
    fail "accepted: $*"
  elif grep -qF -- "${message}" "${OUT}/refused.log"; then
    pass "refused with \"${message}\": $*"
  else
    cat "${OUT}/refused.log"; fail "refused without \"${message}\": $*"
  fi
}
refused "signing keys are required"
refused "signingKeys.existingVerificationSecret is required" --set signingKeys.existingSecret=keys --set webhook.clientAuth=none
refused "signingKeys.keyring is empty" --set signingKeys.create=true --set webhook.clientAuth=none
refused "signingKeys.keyring is not JSON" --set signingKeys.create=true --set-string 'signingKeys.keyring=keys: [' --set webhook.clientAuth=none
refused "either create: true (with keyring) or existingSecret" -f e2e/chart/values/generated-keys.yaml --set signingKeys.existingSecret=keys
refused "webhook.clientAuth=required needs the CA" -f e2e/chart/values/minimal.yaml --set webhook.clientCA.existingConfigMap=
refused "additional properties 'webhok' not allowed" -f e2e/chart/values/minimal.yaml --set webhok.replicas=3
refused "additional properties 'replica' not allowed" -f e2e/chart/values/minimal.yaml --set operator.replica=3
refused "value must be one of" -f e2e/chart/values/minimal.yaml --set webhook.clientAuth=maybe
refused "value must be one of" -f e2e/chart/values/minimal.yaml --set certificates.mode=selfSigned
refused "/operator/image/digest" -f e2e/chart/values/minimal.yaml --set operator.image.digest=latest
refused "/defaultSandboxTTL" -f e2e/chart/values/minimal.yaml --set defaultSandboxTTL=3days
refused "/webhook/admitClients/0" -f e2e/chart/values/minimal.yaml --set 'webhook.admitClients={O=acme}'
refused "policy.requireSignedBundles needs the public policy-signing ring" -f e2e/chart/values/minimal.yaml --set policy.requireSignedBundles=true
refused "policy.bundleKeys: set either ring or existingSecret" -f e2e/chart/values/signed-bundles.yaml --set policy.bundleKeys.existingSecret=mine

# Signed bundles: both Deployments get the flag's variables and the ring's mount; none by default.
if [[ "$(grep -c 'name: AGENTGOV_REQUIRE_SIGNED_BUNDLES' "${OUT}/signed-bundles.yaml")" == 2 ]] \
  && [[ "$(grep -c 'mountPath: /etc/agentgov/bundle-keys' "${OUT}/signed-bundles.yaml")" == 2 ]] \
  && grep -qF 'secretName: agentgov-bundle-keys' "${OUT}/signed-bundles.yaml" \
  && ! grep -qF AGENTGOV_REQUIRE_SIGNED_BUNDLES "${OUT}/minimal.yaml"; then
  pass "policy.requireSignedBundles: operator and webhook verify bundles with the mounted ring"
else
  fail "policy.requireSignedBundles: variables or mounts"
fi

# The allowed clients reach the webhook as its flag's variable, comma-separated; none, no variable.
if grep -qF 'value: "CN=nomad-scheduler,uri:spiffe://acme.example/batch"' "${OUT}/admit-clients.yaml" \
  && ! grep -qF AGENTGOV_ADMIT_CLIENTS "${OUT}/minimal.yaml"; then
  pass "webhook.admitClients: AGENTGOV_ADMIT_CLIENTS set as listed, absent when empty"
else
  fail "webhook.admitClients: AGENTGOV_ADMIT_CLIENTS"
fi

# PolicyReports: the chart's CRD copy is the pinned upstream file; it is rendered only with
# policyReports.enabled (and installCRD), never by default.
if bash e2e/controlplane/policyreport-crd.sh --check-chart \
  && grep -qx '  name: policyreports.wgpolicyk8s.io' "${OUT}/policy-reports.yaml" \
  && ! grep -q 'wgpolicyk8s.io' "${OUT}/minimal.yaml" \
  && helm template agentgov "${CHART}" --namespace "${NS}" -f e2e/chart/values/minimal.yaml -f e2e/chart/values/policy-reports.yaml \
    --set policyReports.installCRD=false >"${OUT}/no-crd.yaml" \
  && ! grep -qx '  name: policyreports.wgpolicyk8s.io' "${OUT}/no-crd.yaml" \
  && grep -q 'wgpolicyk8s.io' "${OUT}/no-crd.yaml"; then
  pass "policyReports: the upstream CRD copy, rendered only when enabled"
else
  fail "policyReports: CRD copy or rendering"
fi

if python3 e2e/chart/check_monitoring.py "${OUT}/monitoring.yaml" --promql "${BIN}/promql"; then
  pass "alerts and dashboard: metrics exist, PromQL parses"
else
  fail "alerts and dashboard"
fi

# The rule groups exactly as the chart renders them (values/monitoring.yaml), as a Prometheus rules
# file; each e2e/chart/*_test.yaml is copied beside it and reads it as rules.yaml.
mkdir -p "${OUT}/rules"
if python3 -c 'import sys, yaml
rules = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o and o["kind"] == "PrometheusRule"]
assert len(rules) == 1, f"want one PrometheusRule, got {len(rules)}"
yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, open(sys.argv[2], "w"), sort_keys=False)' \
    "${OUT}/monitoring.yaml" "${OUT}/rules/rules.yaml" \
  && cp e2e/chart/*_test.yaml "${OUT}/rules/" \
  && promtool check rules "${OUT}/rules/rules.yaml" >"${OUT}/promtool.log" 2>&1 \
  && (cd "${OUT}/rules" && promtool test rules ./*_test.yaml) >>"${OUT}/promtool.log" 2>&1; then
  pass "alert rules: promtool check rules, promtool test rules ($(cd e2e/chart && echo *_test.yaml))"
else
  cat "${OUT}/promtool.log" 2>/dev/null; fail "alert rules: promtool check rules or test rules"
fi

if python3 e2e/chart/argocd_health_test.py; then pass "Argo CD health check"; else fail "Argo CD health check"; fi

# GitOps examples parse; the Agents in them are validated against the CRD by e2e/tests/chart.rs.
if python3 -c 'import sys, yaml; [list(yaml.safe_load_all(open(f))) for f in sys.argv[1:]]' $(find examples/gitops -name '*.yaml'); then
  pass "examples/gitops/**/*.yaml parse"
else
  fail "examples/gitops YAML"
fi

# Dockerfiles: static musl build, distroless static (or scratch) base, non-root.
for dockerfile in deploy/docker/operator.Dockerfile deploy/docker/webhook.Dockerfile; do
  missing=()
  grep -q -- '--target x86_64-unknown-linux-musl' "${dockerfile}" || missing+=("musl target")
  tail -n +"$(grep -n '^FROM' "${dockerfile}" | tail -1 | cut -d: -f1)" "${dockerfile}" \
    | grep -qE '^FROM (gcr.io/distroless/static|scratch)' || missing+=("distroless static or scratch final stage")
  grep -qx 'USER 65532:65532' "${dockerfile}" || missing+=("USER 65532:65532")
  if [[ ${#missing[@]} == 0 ]]; then pass "${dockerfile}"; else fail "${dockerfile}: ${missing[*]}"; fi
done

echo "chart: ${PASSED} passed, ${FAILED} failed"
[[ "${FAILED}" == 0 ]]
