#!/usr/bin/env bash
# Install the chart and policy tooling into .cache/tools (cached, idempotent, safe to run concurrently):
#   helm    helm.sh/helm/v3, built from the Go module proxy (static, version and default
#           Kubernetes version stamped the way helm's own Makefile does)
#   opa     github.com/open-policy-agent/opa, built from the Go module proxy (static, no Wasm):
#           `make policy-test` and the differential test crds/tests/opa_differential.rs
#   promql  e2e/chart/promql: Prometheus' PromQL parser, to check the chart's alerts and dashboard
#   promtool github.com/prometheus/prometheus/cmd/promtool, built from the Go module proxy at the
#           prometheus module version of e2e/chart/promql/go.mod (static, service discovery
#           plugins left out): `promtool check rules` and `promtool test rules` on the chart's alerts
#   lua5.4  Debian package, for the Argo CD health-check tests (examples/gitops/argocd)
#   PyYAML  for e2e/chart/*.py (already on the machine image; installed if missing)
#
#   hack/tools.sh                  install what is missing
#   hack/tools.sh opa helm         install only these (of helm opa promql promtool kubeconform
#                                  openapi2jsonschema lua pyyaml)
#   hack/tools.sh --print-bin-dir  print the directory holding helm (for PATH)
#
# Environment: AGENTGOV_TOOLS_DIR (default <repo>/.cache/tools).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${AGENTGOV_TOOLS_DIR:-${REPO}/.cache/tools}"
BIN="${TOOLS_DIR}/bin"

# helm v3.22.0 is built against k8s.io/client-go v0.37, the same minor as the loopback control
# plane (e2e/controlplane). `helm template` assumes that Kubernetes version when no cluster is
# asked, so Chart.yaml's kubeVersion constraint is checked against 1.37.
HELM_VERSION="v3.22.0"
KUBECONFORM_VERSION="v0.7.0"
# OPA, the reference the promotion policy is checked against (make policy-test and
# crds/tests/opa_differential.rs). v1.22.4 differs from v1.22.3 only in the Go toolchain its
# published binaries were built with, which does not apply to a build from source.
OPA_VERSION="v1.22.3"
HELM_K8S_MAJOR="1"
HELM_K8S_MINOR="37"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "${BIN}"
  exit 0
fi

log() { printf '[tools] %s\n' "$*" >&2; }
mkdir -p "${BIN}"
exec 9>"${TOOLS_DIR}/.lock"
flock 9

install_helm() {
  local pkg="helm.sh/helm/v3"
  local ldflags="-s -w -X ${pkg}/internal/version.version=${HELM_VERSION} -X ${pkg}/internal/version.gitTreeState=clean"
  local k
  for k in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X ${pkg}/${k}.k8sVersionMajor=${HELM_K8S_MAJOR} -X ${pkg}/${k}.k8sVersionMinor=${HELM_K8S_MINOR}"
  done
  local stamp
  stamp="$(printf '%s\n' "${HELM_VERSION}" "$(go version)" "${ldflags}" | sha256sum | cut -d' ' -f1)"
  if [[ -x "${BIN}/helm" && "$(cat "${BIN}/.helm.stamp" 2>/dev/null)" == "${stamp}" ]]; then
    return 0
  fi
  command -v go >/dev/null || { log "go is needed to build helm"; exit 1; }
  log "building helm ${HELM_VERSION} (Go module proxy; a few minutes the first time)"
  GOBIN="${BIN}" CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
    go install -trimpath -ldflags "${ldflags}" "${pkg}/cmd/helm@${HELM_VERSION}"
  echo "${stamp}" > "${BIN}/.helm.stamp"
}

install_opa() {
  local stamp
  stamp="$(printf '%s\n' "${OPA_VERSION}" "$(go version)" | sha256sum | cut -d' ' -f1)"
  if [[ -x "${BIN}/opa" && "$(cat "${BIN}/.opa.stamp" 2>/dev/null)" == "${stamp}" ]]; then
    return 0
  fi
  command -v go >/dev/null || { log "go is needed to build opa"; exit 1; }
  log "building opa ${OPA_VERSION} (Go module proxy; a few minutes the first time)"
  GOBIN="${BIN}" CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
    go install -trimpath -ldflags "-s -w" "github.com/open-policy-agent/opa@${OPA_VERSION}"
  echo "${stamp}" > "${BIN}/.opa.stamp"
}

install_promql() {
  local src="${REPO}/e2e/chart/promql"
  local stamp
  stamp="$(cat "${src}/go.mod" "${src}/go.sum" "${src}/main.go" <(go version) | sha256sum | cut -d' ' -f1)"
  if [[ -x "${BIN}/promql" && "$(cat "${BIN}/.promql.stamp" 2>/dev/null)" == "${stamp}" ]]; then
    return 0
  fi
  log "building e2e/chart/promql (Prometheus' PromQL parser)"
  (cd "${src}" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -o "${BIN}/promql" .)
  echo "${stamp}" > "${BIN}/.promql.stamp"
}

# promtool is built at the prometheus module version e2e/chart/promql pins, so both share one
# module download; v0.316.0 is Prometheus 3.16.0 (the module's minor carries major and minor).
# remove_all_sd leaves out the cloud service-discovery plugins (check rules and test rules need
# none of them); netgo as Prometheus' release builds do.
install_promtool() {
  local version
  version="$(sed -n 's|^require github.com/prometheus/prometheus \(v[^ ]*\)$|\1|p; s|^[[:space:]]*github.com/prometheus/prometheus \(v[^ ]*\)$|\1|p' "${REPO}/e2e/chart/promql/go.mod")"
  [[ "${version}" =~ ^v0\.([0-9]+)\.([0-9]+)$ ]] || { log "no prometheus version in e2e/chart/promql/go.mod"; exit 1; }
  local release="$((10#${BASH_REMATCH[1]} / 100)).$((10#${BASH_REMATCH[1]} % 100)).${BASH_REMATCH[2]}"
  local tags="netgo,remove_all_sd"
  local ldflags="-s -w -X github.com/prometheus/common/version.Version=${release}"
  local stamp
  stamp="$(printf '%s\n' "${version}" "$(go version)" "${tags}" "${ldflags}" | sha256sum | cut -d' ' -f1)"
  if [[ -x "${BIN}/promtool" && "$(cat "${BIN}/.promtool.stamp" 2>/dev/null)" == "${stamp}" ]]; then
    return 0
  fi
  command -v go >/dev/null || { log "go is needed to build promtool"; exit 1; }
  log "building promtool ${version} (Prometheus ${release}; Go module proxy; a few minutes the first time)"
  GOBIN="${BIN}" CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
    go install -trimpath -tags "${tags}" -ldflags "${ldflags}" "github.com/prometheus/prometheus/cmd/promtool@${version}"
  echo "${stamp}" > "${BIN}/.promtool.stamp"
}

install_kubeconform() {
  local stamp
  stamp="$(printf '%s\n' "${KUBECONFORM_VERSION}" "$(go version)" | sha256sum | cut -d' ' -f1)"
  if [[ -x "${BIN}/kubeconform" && "$(cat "${BIN}/.kubeconform.stamp" 2>/dev/null)" == "${stamp}" ]]; then
    return 0
  fi
  log "building kubeconform ${KUBECONFORM_VERSION} (Go module proxy)"
  GOBIN="${BIN}" CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
    go install -trimpath "github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}"
  echo "${stamp}" > "${BIN}/.kubeconform.stamp"
}

# openapi2jsonschema turns the loopback API server's OpenAPI (built-in kinds and our CRDs) into
# the JSON schemas kubeconform reads: no schema download. Its pin of PyYAML < 6 does not build on
# Python 3.11, so it is installed without dependencies and given current ones.
install_openapi2jsonschema() {
  command -v openapi2jsonschema >/dev/null && python3 -c 'import jsonref, click, colorama' 2>/dev/null && return 0
  log "installing openapi2jsonschema (pip)"
  python3 -m pip install -q --no-deps 'openapi2jsonschema==0.9.1'
  python3 -m pip install -q 'jsonref==1.1.0' 'click==8.4.0' 'colorama==0.4.6'
}

install_lua() {
  command -v lua5.4 >/dev/null && return 0
  log "installing lua5.4 (apt-get)"
  local sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  ${sudo} apt-get install -y -q --no-install-recommends lua5.4 >/dev/null 2>&1 \
    || { ${sudo} apt-get update -q >/dev/null && ${sudo} apt-get install -y -q --no-install-recommends lua5.4 >/dev/null; }
  command -v lua5.4 >/dev/null || { log "lua5.4 is still missing after apt-get install"; exit 1; }
}

install_pyyaml() {
  python3 -c 'import yaml' 2>/dev/null && return 0
  log "installing PyYAML (pip)"
  python3 -m pip install -q 'PyYAML==6.0.3'
}

ALL_TOOLS=(helm opa promql promtool kubeconform openapi2jsonschema lua pyyaml)
if (($# == 0)); then
  set -- "${ALL_TOOLS[@]}"
fi
for tool in "$@"; do
  [[ " ${ALL_TOOLS[*]} " == *" ${tool} "* ]] || { log "unknown tool ${tool} (one of: ${ALL_TOOLS[*]})"; exit 2; }
  "install_${tool}"
done
[[ ! -x "${BIN}/helm" ]] || "${BIN}/helm" version --short >&2
[[ ! -x "${BIN}/opa" ]] || log "opa $("${BIN}/opa" version | sed -n 's/^Version: //p')"
