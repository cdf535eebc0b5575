#!/usr/bin/env bash
# Debian packages the single node (e2e/node) needs, installed once and idempotently:
#   runc                         the OCI runtime containerd's shim starts (1.1.5 in Debian 12)
#   containernetworking-plugins  bridge, host-local, portmap, loopback CNI plugins (1.1.1)
#   iptables, conntrack, ipset   kube-proxy (iptables mode), the guard DNAT, kube-router
#   umoci, skopeo                images assembled and converted without a daemon or registry
#   busybox-static               the test image's only binary
# containerd itself is built from Go modules (e2e/node/build.sh), not taken from Debian: 1.6
# relies on a cgroup-driver fallback newer kubelets drop.
#
#   hack/node-packages.sh          install what is missing (root, or sudo)
#   hack/node-packages.sh --check  exit 1 and name what is missing, install nothing
set -euo pipefail

PACKAGES=(runc containernetworking-plugins iptables conntrack ipset umoci skopeo busybox-static)
log() { printf '[node-packages] %s\n' "$*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q '^install ok installed$' || missing+=("${p}")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
  log "missing: ${missing[*]} (run hack/node-packages.sh)"
  exit 1
fi
sudo=""
[[ "$(id -u)" == 0 ]] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
log "installing ${missing[*]} (apt-get)"
# A stale or empty package list fails the first attempt: update once, then try again.
if ! ${sudo} apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  ${sudo} apt-get update -q >/dev/null
  ${sudo} apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
for p in "${missing[@]}"; do
  dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q '^install ok installed$' \
    || { log "${p} is still missing after apt-get install"; exit 1; }
done
log "installed ${missing[*]}"
