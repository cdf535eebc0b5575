#!/usr/bin/env bash
# Build (or reuse) OPA Gatekeeper's manager binary and its CRDs, the peer `e2e/bench/peer.sh`
# measures agentgov's webhook against. Built from the Go module
# github.com/open-policy-agent/gatekeeper/v3 at GATEKEEPER_VERSION (default below; it must be a
# version the Go module proxy serves: `go list -m -versions github.com/open-policy-agent/gatekeeper/v3`),
# with the module's own go.mod and go.sum (`go install module@version`), as its Makefile builds
# `bin/manager` (version stamped by -ldflags, CGO off as in its Dockerfile).
#
# Output: $AGENTGOV_PEERS_DIR/gatekeeper-<version>/bin/manager
#         $AGENTGOV_PEERS_DIR/gatekeeper-<version>/crds/*.yaml  (manifest_staging/charts/gatekeeper/crds)
#         $AGENTGOV_PEERS_DIR/gatekeeper-<version>/versions     (Go, Gatekeeper, OPA, ... from `go version -m`)
#         (AGENTGOV_PEERS_DIR defaults to <repo>/.cache/peers)
# The build is skipped when the binary and CRDs exist and the stamp matches the hash of the
# module and version, the Go version, the flags and RECIPE: a warm run does nothing.
#
# Usage: gatekeeper-build.sh [--print-dir | --print-version | --force]
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/../.." && pwd -P)"
MODULE="github.com/open-policy-agent/gatekeeper/v3"
VERSION="${GATEKEEPER_VERSION:-v3.23.1}"

log() { printf '[gatekeeper-build] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

CACHE_ROOT="${AGENTGOV_PEERS_DIR:-${REPO_ROOT}/.cache/peers}"
OUT_DIR="${CACHE_ROOT}/gatekeeper-${VERSION}"
BIN="${OUT_DIR}/bin/manager"
CRD_DIR="${OUT_DIR}/crds"
STAMP_FILE="${OUT_DIR}/stamp"

force=0
case "${1:-}" in
  --print-dir) printf '%s\n' "${OUT_DIR}"; exit 0 ;;
  --print-version) printf '%s\n' "${VERSION}"; exit 0 ;;
  --force) force=1 ;;
  "") ;;
  -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument: $1 (see --help)" ;;
esac

command -v go >/dev/null 2>&1 || die "go is not on PATH"

export GOFLAGS="-buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GO111MODULE=on
RECIPE=2 # bump when the way of building changes
LDFLAGS="-s -w -X ${MODULE}/pkg/version.Version=${VERSION}"
BUILD_FLAGS=(-trimpath "-ldflags=${LDFLAGS}")

hash_inputs() {
  {
    printf '%s@%s\n' "${MODULE}" "${VERSION}"
    go version
    printf 'CGO_ENABLED=%s GOFLAGS=%s %s\n' "${CGO_ENABLED}" "${GOFLAGS}" "${BUILD_FLAGS[*]}"
    printf 'recipe %s\n' "${RECIPE}"
  } | sha256sum | awk '{print $1}'
}
WANT_STAMP="$(hash_inputs)"

up_to_date() {
  [[ -f "${STAMP_FILE}" && "$(cat "${STAMP_FILE}")" == "${WANT_STAMP}" ]] || return 1
  [[ -x "${BIN}" ]] || return 1
  compgen -G "${CRD_DIR}/*.yaml" >/dev/null || return 1
  [[ -s "${OUT_DIR}/versions" ]] || return 1
}

if (( ! force )) && up_to_date; then
  log "up to date: Gatekeeper ${VERSION} in ${OUT_DIR}"
  exit 0
fi

mkdir -p "${OUT_DIR}"
exec 9>"${OUT_DIR}/.lock"
if ! flock -n 9; then
  log "another build holds ${OUT_DIR}/.lock; waiting"
  flock 9
fi
if (( ! force )) && up_to_date; then
  log "up to date (built by a concurrent run): ${OUT_DIR}"
  exit 0
fi

log "building Gatekeeper ${VERSION} (${MODULE}) with $(go version | awk '{print $3}') into ${OUT_DIR}"
log "GOPROXY=$(go env GOPROXY) GOCACHE=$(go env GOCACHE) GOMODCACHE=$(go env GOMODCACHE)"
total_start=${SECONDS}
STAGING_DIR="$(mktemp -d "${OUT_DIR}/.staging.XXXXXX")"
trap 'rc=$?; rm -rf -- "${STAGING_DIR}"; (( rc == 0 )) || log "FAILED (exit ${rc}) after $(( SECONDS - total_start ))s"; exit "${rc}"' EXIT

# The source (module zip, checked against sum.golang.org like any module), for the CRDs.
t0=${SECONDS}
src="$(go mod download -json "${MODULE}@${VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -n "${src}" && -d "${src}" ]] || die "go mod download ${MODULE}@${VERSION} gave no source directory (is the version on the proxy? go list -m -versions ${MODULE})"
log "module source in ${src} ($(( SECONDS - t0 ))s)"

# The manager: `go install module@version` builds with the module's own go.mod/go.sum
# (no replace directives in it), i.e. exactly the dependency versions Gatekeeper ships.
t0=${SECONDS}
(
  export GOBIN="${STAGING_DIR}"
  go install "${BUILD_FLAGS[@]}" "${MODULE}@${VERSION}"
) &
pid=$!
next=60
while kill -0 "${pid}" 2>/dev/null; do
  sleep 1
  if (( SECONDS - t0 >= next )); then
    log "  still building ($(( SECONDS - t0 ))s)"
    next=$(( next + 60 ))
  fi
done
wait "${pid}" || die "go install ${MODULE}@${VERSION} failed"
[[ -x "${STAGING_DIR}/gatekeeper" ]] || die "go install produced no gatekeeper binary in ${STAGING_DIR}"
log "manager built in $(( SECONDS - t0 ))s"

rm -f -- "${STAMP_FILE}"
rm -rf -- "${CRD_DIR}"
mkdir -p "${OUT_DIR}/bin" "${CRD_DIR}"
cp -- "${src}"/manifest_staging/charts/gatekeeper/crds/*.yaml "${CRD_DIR}/"
chmod -R u+w "${CRD_DIR}"
# What the binary was built from, as its build info says.
go version -m "${STAGING_DIR}/gatekeeper" | awk '
  NR == 1 { sub(/^.*: /, ""); print $0 }
  ($1 == "mod" || $1 == "dep") && $2 ~ /^(github.com\/open-policy-agent\/(gatekeeper\/v3|opa|frameworks\/constraint)|sigs.k8s.io\/controller-runtime|k8s.io\/client-go)$/ { print $2 " " $3 }
' > "${OUT_DIR}/versions"
mv -f -- "${STAGING_DIR}/gatekeeper" "${BIN}"
printf '%s\n' "${WANT_STAMP}" > "${STAMP_FILE}"
log "done in $(( SECONDS - total_start ))s: ${BIN} ($(du -sh "${BIN}" | awk '{print $1}')), $(ls "${CRD_DIR}" | wc -l) CRDs"
