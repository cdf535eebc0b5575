#!/usr/bin/env bash
# Build (or reuse) the control-plane binaries used by the e2e tests:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
# and the node's Kubernetes binaries (e2e/node): kubelet, kube-proxy
# from the Go module pinned in e2e/controlplane/gomod/go.mod.
#
# Output: $AGENTGOV_CACHE_DIR/<k8s-version>/bin
#         (AGENTGOV_CACHE_DIR defaults to <repo>/.cache/controlplane)
# The build is skipped when all binaries exist and the stamp file matches the
# hash of go.mod, go.sum, the wrapper sources, the Go version and the flags.
#
# Usage: build.sh [--print-bin-dir | --print-version | --force]
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/../.." && pwd -P)"
GOMOD_DIR="${SCRIPT_DIR}/gomod"
BINARIES=(etcd kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy)

log() { printf '[controlplane-build] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Version of a module as pinned in go.mod (first "require" match wins).
mod_version() {
  awk -v mod="$1" '
    $1 == "require" && $2 == mod { print $3; exit }
    $1 == mod && $2 ~ /^v/       { print $2; exit }
  ' "${GOMOD_DIR}/go.mod"
}

K8S_VERSION="$(mod_version k8s.io/kubernetes)"
ETCD_VERSION="$(mod_version go.etcd.io/etcd/server/v3)"
[[ -n "${K8S_VERSION}" ]] || die "cannot read the k8s.io/kubernetes version from ${GOMOD_DIR}/go.mod"

CACHE_ROOT="${AGENTGOV_CACHE_DIR:-${REPO_ROOT}/.cache/controlplane}"
OUT_DIR="${CACHE_ROOT}/${K8S_VERSION}"
BIN_DIR="${OUT_DIR}/bin"
STAMP_FILE="${OUT_DIR}/stamp"

force=0
case "${1:-}" in
  --print-bin-dir) printf '%s\n' "${BIN_DIR}"; exit 0 ;;
  --print-version) printf '%s\n' "${K8S_VERSION}"; exit 0 ;;
  --force) force=1 ;;
  "") ;;
  -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument: $1 (see --help)" ;;
esac

command -v go >/dev/null 2>&1 || die "go is not on PATH (need Go >= $(awk '$1=="go"{print $2; exit}' "${GOMOD_DIR}/go.mod"))"

# Reproducible, CI-friendly settings. GOCACHE/GOMODCACHE are Go's defaults
# unless the caller sets them (CI can cache those two directories).
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED="${CGO_ENABLED:-0}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

minor="${K8S_VERSION#v}"; minor="${minor#*.}"; minor="${minor%%.*}"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
  version_ldflags+=" -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
  version_ldflags+=" -X ${pkg}.gitTreeState=clean"
done
LDFLAGS="-s -w${version_ldflags}"
BUILD_FLAGS=(-trimpath "-ldflags=${LDFLAGS}")

hash_inputs() {
  {
    cat "${GOMOD_DIR}/go.mod" "${GOMOD_DIR}/go.sum" "${GOMOD_DIR}/etcd/main.go"
    go version
    printf 'CGO_ENABLED=%s GOFLAGS=%s %s\n' "${CGO_ENABLED}" "${GOFLAGS}" "${BUILD_FLAGS[*]}"
  } | sha256sum | awk '{print $1}'
}
WANT_STAMP="$(hash_inputs)"

up_to_date() {
  [[ -f "${STAMP_FILE}" ]] || return 1
  [[ "$(cat "${STAMP_FILE}")" == "${WANT_STAMP}" ]] || return 1
  local b
  for b in "${BINARIES[@]}"; do [[ -x "${BIN_DIR}/${b}" ]] || return 1; done
}

if (( ! force )) && up_to_date; then
  log "up to date: Kubernetes ${K8S_VERSION}, etcd ${ETCD_VERSION} in ${BIN_DIR}"
  exit 0
fi

# Serialize concurrent builds of the same cache dir (e.g. parallel e2e runs).
mkdir -p "${OUT_DIR}"
if command -v flock >/dev/null 2>&1; then
  exec 9>"${OUT_DIR}/.lock"
  if ! flock -n 9; then
    log "another build holds ${OUT_DIR}/.lock; waiting"
    flock 9
  fi
  if (( ! force )) && up_to_date; then
    log "up to date (built by a concurrent run): ${BIN_DIR}"
    exit 0
  fi
fi

log "building Kubernetes ${K8S_VERSION} + etcd ${ETCD_VERSION} with $(go version | awk '{print $3}') into ${BIN_DIR}"
log "GOCACHE=$(go env GOCACHE) GOMODCACHE=$(go env GOMODCACHE) CGO_ENABLED=${CGO_ENABLED}"

total_start=${SECONDS}
current_step=""
on_exit() {
  local rc=$?
  if (( rc != 0 )) && [[ -n "${current_step}" ]]; then
    log "FAILED at step '${current_step}' (exit ${rc}) after $(( SECONDS - total_start ))s"
  fi
  [[ -n "${STAGING_DIR:-}" ]] && rm -rf -- "${STAGING_DIR}"
  return "${rc}"
}
trap on_exit EXIT

mkdir -p "${OUT_DIR}"
STAGING_DIR="$(mktemp -d "${OUT_DIR}/.staging.XXXXXX")"

step() { # step <name> <cmd...>: run it in gomod/, saying every 30 s that it still runs
  current_step="$1"; shift
  local t0=${SECONDS} pid rc=0
  log "step ${current_step} ... ($(( SECONDS - total_start ))s so far)"
  ( cd "${GOMOD_DIR}" && "$@" ) &
  pid=$!
  while ! wait_for_exit "${pid}" 30; do
    log "  ${current_step}: still building ($(( SECONDS - t0 ))s)"
  done
  wait "${pid}" || rc=$?
  (( rc == 0 )) || exit "${rc}"
  log "step ${current_step} done in $(( SECONDS - t0 ))s"
}
wait_for_exit() { # wait_for_exit PID SECONDS: 0 once PID has exited, 1 if still running then
  local i
  for (( i = 0; i < $2 * 5; i++ )); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.2
  done
  return 1
}

step "download-modules" go mod download
step "build-etcd" go build "${BUILD_FLAGS[@]}" -o "${STAGING_DIR}/etcd" ./etcd
step "build-kube-apiserver" go build "${BUILD_FLAGS[@]}" -o "${STAGING_DIR}/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
step "build-kube-controller-manager" go build "${BUILD_FLAGS[@]}" -o "${STAGING_DIR}/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
step "build-kubectl" go build "${BUILD_FLAGS[@]}" -o "${STAGING_DIR}/kubectl" k8s.io/kubernetes/cmd/kubectl
step "build-kube-scheduler" go build "${BUILD_FLAGS[@]}" -o "${STAGING_DIR}/kube-scheduler" k8s.io/kubernetes/cmd/kube-scheduler
step "build-kubelet" go build "${BUILD_FLAGS[@]}" -o "${STAGING_DIR}/kubelet" k8s.io/kubernetes/cmd/kubelet
step "build-kube-proxy" go build "${BUILD_FLAGS[@]}" -o "${STAGING_DIR}/kube-proxy" k8s.io/kubernetes/cmd/kube-proxy

current_step="install"
rm -f -- "${STAMP_FILE}"
mkdir -p "${BIN_DIR}"
for b in "${BINARIES[@]}"; do
  mv -f -- "${STAGING_DIR}/${b}" "${BIN_DIR}/${b}"
done
printf '%s\n' "${WANT_STAMP}" > "${STAMP_FILE}"
current_step=""

log "done in $(( SECONDS - total_start ))s: $(cd "${BIN_DIR}" && echo "${BINARIES[*]}")"
