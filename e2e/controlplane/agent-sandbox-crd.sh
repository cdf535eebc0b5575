#!/usr/bin/env bash
# Fetch (once, cached) the upstream agent-sandbox Sandbox CRD (sandboxes.agents.x-k8s.io) that
# e2e/tests/sandbox.rs installs on the loopback control plane. It is the YAML published in the
# Go module sigs.k8s.io/agent-sandbox (k8s/crds/, the same file as its Helm chart's crds/),
# taken with `go mod download` through the Go module proxy: Go checks the module against
# sum.golang.org, this script against the module sum and the file hash pinned below. Nothing is
# downloaded from elsewhere and no copy is committed.
#
# Output: $AGENTGOV_AGENT_SANDBOX_DIR/<version>/agents.x-k8s.io_sandboxes.yaml, its path printed
#         on stdout (AGENTGOV_AGENT_SANDBOX_DIR defaults to <repo>/.cache/agent-sandbox).
# A cached copy is used when its hash is the pinned one: a warm run only hashes the file.
#
# Usage: agent-sandbox-crd.sh [--print-version]
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/../.." && pwd -P)"
MODULE="sigs.k8s.io/agent-sandbox"
# v1.0.1 is the newest version the Go module proxy serves (`go list -m -versions
# sigs.k8s.io/agent-sandbox`); it serves Sandbox at agents.x-k8s.io/v1beta1 only. To upgrade,
# change the three lines below together (the sum is `go mod download -json`'s "Sum").
VERSION="v1.0.1"
MODULE_SUM="h1:AZA1kFurdKIdNL04j9RhGZXb3kL2/O80eiXaTC/oXjM="
CRD_SHA256="d828dde35568aa4b629878a051012bb9e29888151ae06b275948ca822b0cab3e"
CRD_PATH="k8s/crds/agents.x-k8s.io_sandboxes.yaml"

log() { printf '[agent-sandbox-crd] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "${1:-}" in
  --print-version) printf '%s\n' "${VERSION}"; exit 0 ;;
  "") ;;
  -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument: $1 (see --help)" ;;
esac

OUT_DIR="${AGENTGOV_AGENT_SANDBOX_DIR:-${REPO_ROOT}/.cache/agent-sandbox}/${VERSION}"
OUT="${OUT_DIR}/$(basename "${CRD_PATH}")"

cached() { [[ -f "${OUT}" ]] && [[ "$(sha256sum "${OUT}" | awk '{print $1}')" == "${CRD_SHA256}" ]]; }

if cached; then
  printf '%s\n' "${OUT}"
  exit 0
fi
mkdir -p "${OUT_DIR}"
exec 9>"${OUT_DIR}/.lock"
flock 9
if cached; then # fetched by a concurrent run
  printf '%s\n' "${OUT}"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH (the CRD comes from the Go module ${MODULE}@${VERSION})"
# A scratch directory: `go mod download` of a module@version needs no go.mod, and must not
# read (or write) one that happens to be in the working directory.
scratch="$(mktemp -d)"
trap 'rm -rf -- "${scratch}"' EXIT
log "go mod download ${MODULE}@${VERSION}"
json="$(cd "${scratch}" && GOFLAGS=-mod=mod go mod download -json "${MODULE}@${VERSION}")" \
  || die "go mod download ${MODULE}@${VERSION} failed: ${json:-no output}"
field() { printf '%s\n' "${json}" | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]) or "")' "$1"; }
[[ -z "$(field Error)" ]] || die "go mod download ${MODULE}@${VERSION}: $(field Error)"
sum="$(field Sum)"
dir="$(field Dir)"
[[ "${sum}" == "${MODULE_SUM}" ]] || die "${MODULE}@${VERSION} has sum ${sum:-none}, pinned ${MODULE_SUM}"
src="${dir}/${CRD_PATH}"
[[ -f "${src}" ]] || die "${MODULE}@${VERSION} has no ${CRD_PATH} (in ${dir})"
got="$(sha256sum "${src}" | awk '{print $1}')"
[[ "${got}" == "${CRD_SHA256}" ]] || die "${CRD_PATH} of ${MODULE}@${VERSION} has sha256 ${got}, pinned ${CRD_SHA256}"
# Atomically: a reader never sees half a file.
cp -- "${src}" "${OUT}.tmp"
chmod u+w "${OUT}.tmp"
mv -f -- "${OUT}.tmp" "${OUT}"
log "${OUT} (${MODULE}@${VERSION}, sha256 ${CRD_SHA256})"
printf '%s\n' "${OUT}"
