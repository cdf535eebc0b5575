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
# shellcheck source=../lib/module-file.sh
source "${REPO_ROOT}/e2e/lib/module-file.sh"
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

module_file "${MODULE}" "${VERSION}" "${MODULE_SUM}" "${CRD_PATH}" "${CRD_SHA256}" "${OUT}"
