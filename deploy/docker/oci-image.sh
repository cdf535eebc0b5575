#!/usr/bin/env bash
# Assemble a single-layer OCI image archive from files, with no daemon and no registry
# (umoci builds the layout, skopeo writes the archive with the image's full name, which
# `ctr images import` and `kind load image-archive` use as the image reference).
#
#   oci-image.sh --out FILE.oci.tar --name REF --entrypoint PATH [--user UID:GID]
#                [--file SRC:DEST:MODE]... [--symlink TARGET:LINK]... [--dir PATH:MODE:UID]...
#                [--expose PORT/tcp]... [--nonroot-base]
#
# --nonroot-base lays out what distroless/static-debian12:nonroot gives a static binary:
# /etc/passwd and /etc/group (root, nonroot 65532, nobody), /home/nonroot (65532), /tmp (1777),
# the CA bundle and /etc/os-release; no shell, no package manager. Files are owned by root.
# The archive is reproducible for the same inputs (fixed timestamps).
set -euo pipefail

log() { printf '[oci-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

out="" name="" entrypoint="" user="0:0" nonroot_base=0
files=() links=() dirs=() ports=()
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --entrypoint) entrypoint=$2; shift 2 ;;
    --user) user=$2; shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --symlink) links+=("$2"); shift 2 ;;
    --dir) dirs+=("$2"); shift 2 ;;
    --expose) ports+=("$2"); shift 2 ;;
    --nonroot-base) nonroot_base=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done
[[ -n "${out}" && -n "${name}" && -n "${entrypoint}" ]] || die "--out, --name and --entrypoint are required"
for tool in umoci skopeo; do
  command -v "${tool}" >/dev/null || die "${tool} is missing (hack/node-packages.sh installs it)"
done

# A fixed time makes the layer and config reproducible (SOURCE_DATE_EPOCH if set).
EPOCH="${SOURCE_DATE_EPOCH:-0}"
CREATED="$(date -u -d "@${EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"
work="$(mktemp -d)"
trap 'rm -rf -- "${work}"' EXIT
layout="${work}/layout" bundle="${work}/bundle" tag="build"

umoci init --layout "${layout}"
umoci new --image "${layout}:${tag}"
umoci unpack --image "${layout}:${tag}" "${bundle}" >/dev/null
root="${bundle}/rootfs"

if ((nonroot_base)); then
  install -d -m 0755 "${root}/etc" "${root}/etc/ssl/certs" "${root}/home"
  install -d -m 0700 -o 65532 -g 65532 "${root}/home/nonroot"
  install -d -m 1777 "${root}/tmp"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > "${root}/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' \
    'nonroot:x:65532:' > "${root}/etc/group"
  chmod 0644 "${root}/etc/passwd" "${root}/etc/group"
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || die "/etc/ssl/certs/ca-certificates.crt is missing (ca-certificates)"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "${root}/etc/ssl/certs/ca-certificates.crt"
  printf '%s\n' 'PRETTY_NAME="agentgov static (distroless-like)"' 'ID=agentgov-static' \
    > "${root}/etc/os-release"
  chmod 0644 "${root}/etc/os-release"
fi
for spec in "${dirs[@]}"; do
  IFS=: read -r path mode owner <<<"${spec}"
  install -d -m "${mode}" -o "${owner:-0}" -g "${owner:-0}" "${root}${path}"
done
for spec in "${files[@]}"; do
  IFS=: read -r src dest mode <<<"${spec}"
  [[ -f "${src}" ]] || die "no such file: ${src}"
  install -D -m "${mode}" "${src}" "${root}${dest}"
done
for spec in "${links[@]}"; do
  IFS=: read -r target link <<<"${spec}"
  mkdir -p "$(dirname "${root}${link}")"
  ln -sfn "${target}" "${root}${link}"
done
find "${root}" -exec touch -h -d "@${EPOCH}" {} +

umoci repack --image "${layout}:${tag}" --history.created "${CREATED}" --history.author agentgov \
  --history.created_by "deploy/docker/oci-image.sh" "${bundle}"
config=(--config.entrypoint "${entrypoint}" --config.user "${user}" --config.workingdir /
  --os linux --architecture amd64 --created "${CREATED}" --author agentgov --no-history
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
for p in "${ports[@]}"; do config+=(--config.exposedports "${p}"); done
umoci config --image "${layout}:${tag}" "${config[@]}"
umoci gc --layout "${layout}"
mkdir -p "$(dirname "${out}")"
rm -f -- "${out}"
skopeo copy -q "oci:${layout}:${tag}" "oci-archive:${out}:${name}"
log "${name} -> ${out} ($(du -h "${out}" | cut -f1))"
