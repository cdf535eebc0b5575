#!/usr/bin/env bash
# The chart's CRDs (charts/agentgov/crds/) are copies of the generated crds/*.yaml, the one
# source of truth. Fails when they drift.
#   e2e/chart/check-crds.sh           check
#   e2e/chart/check-crds.sh --update  copy crds/*.yaml into the chart
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="${REPO}/crds"
DST="${REPO}/charts/agentgov/crds"

if [[ "${1:-}" == "--update" ]]; then
  rm -f "${DST}"/*.yaml
  cp "${SRC}"/*.yaml "${DST}/"
  echo "copied $(cd "${SRC}" && ls ./*.yaml | wc -l) CRDs into charts/agentgov/crds/"
  exit 0
fi

if ! diff -u <(cd "${SRC}" && ls ./*.yaml) <(cd "${DST}" && ls ./*.yaml); then
  echo "charts/agentgov/crds/ does not hold the same files as crds/: run e2e/chart/check-crds.sh --update" >&2
  exit 1
fi
for f in "${SRC}"/*.yaml; do
  if ! diff -u "${f}" "${DST}/$(basename "${f}")"; then
    echo "charts/agentgov/crds/$(basename "${f}") drifted from crds/: run e2e/chart/check-crds.sh --update" >&2
    exit 1
  fi
done
echo "chart CRDs match crds/"
