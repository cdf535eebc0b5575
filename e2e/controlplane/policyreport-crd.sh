#!/usr/bin/env bash
# Fetch (once, cached) the upstream PolicyReport CRD (policyreports.wgpolicyk8s.io, the Policy
# WG's wgpolicyk8s.io/v1alpha2 report format) that e2e/tests/policy_reports.rs installs on the
# loopback control plane, and that the chart ships a copy of
# (charts/agentgov/files/policyreports.wgpolicyk8s.io.yaml). It is the YAML published in the Go
# module github.com/kyverno/kyverno (config/crds/policyreport/; the Policy WG's own module,
# sigs.k8s.io/wg-policy-prototypes, is not served by the Go module proxy), taken with
# `go mod download` through the Go module proxy: Go checks the module against sum.golang.org,
# this script against the module sum and the file hash pinned below. Nothing is downloaded from
# elsewhere.
#
# Output: $AGENTGOV_POLICYREPORT_DIR/<version>/wgpolicyk8s.io_policyreports.yaml, its path printed
#         on stdout (AGENTGOV_POLICYREPORT_DIR defaults to <repo>/.cache/policyreport).
# A cached copy is used when its hash is the pinned one: a warm run only hashes the file.
#
# Usage: policyreport-crd.sh [--print-version | --check-chart]
#   --check-chart  fail unless the chart's copy is the pinned upstream file, byte for byte
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/../.." && pwd -P)"
# shellcheck source=../lib/module-file.sh
source "${REPO_ROOT}/e2e/lib/module-file.sh"
MODULE="github.com/kyverno/kyverno"
# Kyverno v1.13.4 ships the wgpolicyk8s.io/v1alpha2 PolicyReport CRD as generated from the
# Policy WG's API types. To upgrade, change the three lines below together (the sum is
# `go mod download -json`'s "Sum"), then copy the file into the chart (see --check-chart).
VERSION="v1.13.4"
MODULE_SUM="h1:2zUi+eszlisLdCir+WIf2NtuUfFPvJtjUNpewdtLjVw="
CRD_SHA256="595ab5728178e3ebe8a9ed9210a32484eb7a0e2dc061b276a3afca703b8ba7c4"
CRD_PATH="config/crds/policyreport/wgpolicyk8s.io_policyreports.yaml"
CHART_COPY="${REPO_ROOT}/charts/agentgov/files/policyreports.wgpolicyk8s.io.yaml"

log() { printf '[policyreport-crd] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

check_chart=false
case "${1:-}" in
  --print-version) printf '%s\n' "${VERSION}"; exit 0 ;;
  --check-chart) check_chart=true ;;
  "") ;;
  -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument: $1 (see --help)" ;;
esac

OUT_DIR="${AGENTGOV_POLICYREPORT_DIR:-${REPO_ROOT}/.cache/policyreport}/${VERSION}"
OUT="${OUT_DIR}/$(basename "${CRD_PATH}")"

# The chart's copy must be the pinned upstream file: its hash is checked here without a
# download, and the downloaded file (if any) is compared with it byte for byte.
if ${check_chart}; then
  [[ -f "${CHART_COPY}" ]] || die "${CHART_COPY} is missing"
  got="$(sha256sum "${CHART_COPY}" | awk '{print $1}')"
  [[ "${got}" == "${CRD_SHA256}" ]] \
    || die "${CHART_COPY} has sha256 ${got}, not the pinned upstream ${CRD_PATH} of ${MODULE}@${VERSION} (${CRD_SHA256}): copy the upstream file, do not edit it"
  if file_has_hash "${OUT}" "${CRD_SHA256}"; then
    cmp -s -- "${OUT}" "${CHART_COPY}" || die "${CHART_COPY} differs from ${OUT}"
  fi
  log "${CHART_COPY} is ${MODULE}@${VERSION} ${CRD_PATH} (sha256 ${CRD_SHA256})"
  exit 0
fi

module_file "${MODULE}" "${VERSION}" "${MODULE_SUM}" "${CRD_PATH}" "${CRD_SHA256}" "${OUT}"
