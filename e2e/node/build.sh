#!/usr/bin/env bash
# Build (or reuse) what the single node needs beyond the control plane's Go module:
#   containerd, containerd-shim-runc-v2, ctr   from e2e/node/gomod (Go module proxy, static)
#   kube-router                               from e2e/node/netpol: its NetworkPolicy
#                                             (firewall) controller enforces policies
#   pause                                     from build/pause/linux/pause.c of the
#                                             k8s.io/kubernetes module (static gcc)
#   images/pause.oci.tar, images/busybox.oci.tar
#                                             OCI archives assembled without a daemon
#                                             (deploy/docker/oci-image.sh: umoci + skopeo)
# kubelet, kube-scheduler and kube-proxy come from e2e/controlplane/build.sh (same go.mod as
# the API server). Debian packages (runc, CNI plugins, iptables, umoci, ...) come from
# hack/node-packages.sh.
#
# Output: $AGENTGOV_NODE_CACHE_DIR/<containerd-version>/{bin,images}
#         (AGENTGOV_NODE_CACHE_DIR defaults to <repo>/.cache/node)
# Skipped when everything exists and the stamp matches go.mod, go.sum, this script, the image
# script, the Go version and the pause source.
#
# Usage: build.sh [--print-dir | --force]
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/../.." && pwd -P)"
GOMOD_DIR="${SCRIPT_DIR}/gomod"
NETPOL_DIR="${SCRIPT_DIR}/netpol"
CP_GOMOD_DIR="${REPO_ROOT}/e2e/controlplane/gomod"
OCI_IMAGE="${REPO_ROOT}/deploy/docker/oci-image.sh"
BINARIES=(containerd containerd-shim-runc-v2 ctr pause kube-router)
IMAGES=(pause busybox)

log() { printf '[node-build] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mod_version() { # mod_version GOMOD_DIR MODULE
  awk -v mod="$2" '
    $1 == "require" && $2 == mod { print $3; exit }
    $1 == mod && $2 ~ /^v/       { print $2; exit }
  ' "$1/go.mod"
}
CONTAINERD_VERSION="$(mod_version "${GOMOD_DIR}" github.com/containerd/containerd/v2)"
K8S_VERSION="$(mod_version "${CP_GOMOD_DIR}" k8s.io/kubernetes)"
[[ -n "${CONTAINERD_VERSION}" && -n "${K8S_VERSION}" ]] || die "cannot read the pinned versions"

CACHE_ROOT="${AGENTGOV_NODE_CACHE_DIR:-${REPO_ROOT}/.cache/node}"
OUT_DIR="${CACHE_ROOT}/containerd-${CONTAINERD_VERSION}"
BIN_DIR="${OUT_DIR}/bin"
IMAGE_DIR="${OUT_DIR}/images"
STAMP_FILE="${OUT_DIR}/stamp"

force=0
case "${1:-}" in
  --print-dir) printf '%s\n' "${OUT_DIR}"; exit 0 ;;
  --force) force=1 ;;
  "") ;;
  -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument: $1 (see --help)" ;;
esac

command -v go >/dev/null 2>&1 || die "go is not on PATH"
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
PKG="github.com/containerd/containerd/v2"
LDFLAGS="-s -w -X ${PKG}/version.Version=${CONTAINERD_VERSION} -X ${PKG}/version.Package=${PKG}"
TAGS="osusergo netgo static_build no_btrfs no_devmapper no_zfs"
SHIM_TAGS="${TAGS} no_grpc"

pause_source() { # the module zip carries build/pause; download it if the cache lacks it
  local dir
  dir="$(cd "${CP_GOMOD_DIR}" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  [[ -f "${dir}/build/pause/linux/pause.c" ]] || die "no build/pause/linux/pause.c in ${dir}"
  printf '%s\n' "${dir}/build/pause/linux/pause.c"
}
PAUSE_C="$(pause_source)"

hash_inputs() {
  {
    cat "${GOMOD_DIR}/go.mod" "${GOMOD_DIR}/go.sum" "${NETPOL_DIR}/go.mod" "${NETPOL_DIR}/go.sum" \
      "${BASH_SOURCE[0]}" "${OCI_IMAGE}" "${PAUSE_C}"
    go version
    printf '%s|%s|%s\n' "${LDFLAGS}" "${TAGS}" "${K8S_VERSION}"
    dpkg-query -W -f='${Version}\n' busybox-static 2>/dev/null || true
  } | sha256sum | awk '{print $1}'
}
WANT_STAMP="$(hash_inputs)"

up_to_date() {
  [[ -f "${STAMP_FILE}" && "$(cat "${STAMP_FILE}")" == "${WANT_STAMP}" ]] || return 1
  local b
  for b in "${BINARIES[@]}"; do [[ -x "${BIN_DIR}/${b}" ]] || return 1; done
  for b in "${IMAGES[@]}"; do [[ -f "${IMAGE_DIR}/${b}.oci.tar" ]] || return 1; done
}

if (( ! force )) && up_to_date; then
  log "up to date: containerd ${CONTAINERD_VERSION}, pause and busybox images in ${OUT_DIR}"
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

bash "${REPO_ROOT}/hack/node-packages.sh"
total_start=${SECONDS}
STAGING_DIR="$(mktemp -d "${OUT_DIR}/.staging.XXXXXX")"
trap 'rm -rf -- "${STAGING_DIR}"' EXIT

step() { # step NAME CMD...: run CMD, log its elapsed time
  local name=$1 t0=${SECONDS}; shift
  log "step ${name} ..."
  "$@" || die "step ${name} failed"
  log "step ${name} done in $(( SECONDS - t0 ))s"
}

build_go() { # build_go OUT TAGS PACKAGE
  (cd "${GOMOD_DIR}" && go build -trimpath -tags "$2" -ldflags "${LDFLAGS}" -o "${STAGING_DIR}/bin/$1" "$3")
}
mkdir -p "${STAGING_DIR}/bin" "${STAGING_DIR}/images"
log "building containerd ${CONTAINERD_VERSION} with $(go version | awk '{print $3}') into ${BIN_DIR}"
step download-modules bash -c "cd '${GOMOD_DIR}' && go mod download"
step build-containerd build_go containerd "${TAGS}" "${PKG}/cmd/containerd"
step build-containerd-shim-runc-v2 build_go containerd-shim-runc-v2 "${SHIM_TAGS}" "${PKG}/cmd/containerd-shim-runc-v2"
step build-ctr build_go ctr "${TAGS}" "${PKG}/cmd/ctr"
KUBE_ROUTER_VERSION="$(mod_version "${NETPOL_DIR}" github.com/cloudnativelabs/kube-router/v2)"
KR="github.com/cloudnativelabs/kube-router/v2"
step build-kube-router bash -c "cd '${NETPOL_DIR}' && go build -trimpath -ldflags '-s -w -X ${KR}/pkg/version.Version=${KUBE_ROUTER_VERSION}' -o '${STAGING_DIR}/bin/kube-router' ${KR}/cmd/kube-router"
step build-pause gcc -Os -static -Wall -Werror -DVERSION="${K8S_VERSION}" -o "${STAGING_DIR}/bin/pause" "${PAUSE_C}"
strip "${STAGING_DIR}/bin/pause"

# The images (deploy/docker/oci-image.sh: umoci, no daemon, no registry).
step image-pause bash "${OCI_IMAGE}" --out "${STAGING_DIR}/images/pause.oci.tar" \
  --name "localhost/agentgov/pause:${K8S_VERSION}" --user 65535:65535 \
  --entrypoint /pause --file "${STAGING_DIR}/bin/pause:/pause:0755"
busybox_args=(--out "${STAGING_DIR}/images/busybox.oci.tar" --name "localhost/agentgov/busybox:test"
  --user 65532:65532 --entrypoint /bin/sh --file /bin/busybox:/bin/busybox:0755)
for applet in $(/bin/busybox --list | grep -vx busybox); do
  busybox_args+=(--symlink "busybox:/bin/${applet}")
done
step image-busybox bash "${OCI_IMAGE}" "${busybox_args[@]}"

rm -f -- "${STAMP_FILE}"
mkdir -p "${BIN_DIR}" "${IMAGE_DIR}"
for b in "${BINARIES[@]}"; do mv -f -- "${STAGING_DIR}/bin/${b}" "${BIN_DIR}/${b}"; done
for b in "${IMAGES[@]}"; do mv -f -- "${STAGING_DIR}/images/${b}.oci.tar" "${IMAGE_DIR}/${b}.oci.tar"; done
printf '%s\n' "${WANT_STAMP}" > "${STAMP_FILE}"
log "done in $(( SECONDS - total_start ))s: ${BINARIES[*]}; images ${IMAGES[*]}"
