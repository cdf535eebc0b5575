#!/usr/bin/env bash
# A single real node on the loopback control plane: containerd (with runc and bridge CNI),
# kubelet, kube-proxy and kube-router's NetworkPolicy controller, next to the control plane of
# e2e/controlplane/cluster.sh (which adds kube-scheduler and the controllers Pods need). Needs
# root, one node per host.
#
# Usage:
#   node.sh up                 control plane + node; prints the state dir (source "$DIR/env")
#   node.sh down               stop the node and the control plane; undo every host change
#   node.sh status             which of the node's processes run
#   node.sh exec -- CMD...     up, run CMD with the env exported, down (even on failure or
#                              interrupt); exits with CMD's status, or 1 if the host is not
#                              left as it was found (see host-state)
#   node.sh host-state         print what a node changes on a host (iptables, routes, links,
#                              mounts, cgroups, sysctls, host paths, node processes)
#   node.sh import ARCHIVE...  import OCI image archives into the running node's containerd
#
# Environment (all optional):
#   AGENTGOV_NODE_DIR          state dir (default <repo>/.cache/node/run; exec: run-<time>-<pid>)
#   AGENTGOV_NODE_IMAGES       extra OCI archives (space-separated) imported into containerd
#   AGENTGOV_NODE_UP_TIMEOUT   seconds to wait for each node stage (default 120)
#   AGENTGOV_KEEP_NODE_DIR     exec: keep the state dir even when CMD succeeds
#   AGENTGOV_NODE_STRICT_CLEAN exec: 0 to report but not fail on host-state differences
#   every variable of e2e/controlplane/cluster.sh (its state dir is $AGENTGOV_NODE_DIR/cluster)
#
# Network: Pods get 10.244.0.0/24 on the bridge cni0; Services are 10.0.0.0/24. No packet for
# either leaves the host: the Service range is a local route (kube-proxy DNATs the addresses in
# use to Pods; the rest are refused by the host), the rest of 10.244.0.0/16 is unreachable,
# forwarding from cni0 to any other interface is refused, and 10.0.0.1:443 (the kubernetes
# Service) is DNATed to the API server's loopback port before the first Pod starts. Nothing is
# masqueraded.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/../.." && pwd -P)"
# shellcheck source=../lib/command-output.sh
source "${REPO_ROOT}/e2e/lib/command-output.sh"
# shellcheck source=../lib/exec-wait.sh
source "${REPO_ROOT}/e2e/lib/exec-wait.sh"
CLUSTER_SH="${REPO_ROOT}/e2e/controlplane/cluster.sh"
NODE_PROCS=(lock containerd kubelet kube-proxy kube-router) # start order; "lock" holds the host lock
MARKER=".agentgov-node"
NODE_NAME="agentgov-node"
POD_CIDR="10.244.0.0/24"
POD_SUPERNET="10.244.0.0/16"
BRIDGE="cni0"
BRIDGE_IP="10.244.0.1"
ROUTE_PROTO="199" # our routes carry this protocol number: deleted by it, nothing else
CHAIN="AGENTGOV-NODE"
LOCK_FILE="/run/agentgov-node.lock"
# Host paths a node may create outside its state dir (kubelet and containerd hard-code some).
HOST_PATHS=(/var/lib/kubelet /var/lib/cni /run/containerd /var/run/netns /var/log/containers
  /var/log/pods /etc/cni /opt/cni /opt/containerd /run/nri /var/run/nri /etc/nri /var/lib/containerd)
# Sysctls the node's components change (kubelet's kernel defaults, kube-proxy's conntrack and
# localnet, forwarding for the bridge): saved at up, restored at down.
SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait
  net.netfilter.nf_conntrack_tcp_be_liberal net.netfilter.nf_conntrack_udp_timeout
  net.netfilter.nf_conntrack_udp_timeout_stream net.ipv4.ip_local_port_range net.ipv4.icmp_ratelimit)
NODE_PROC_NAMES='^(kubelet|containerd|containerd-shim.*|kube-proxy|kube-router)$'

log() { printf '[node] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

abspath() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$(pwd -P)" "$1" ;;
  esac
}

# ---------------------------------------------------------------- host state --

# Rules of every table, without counters. A table that holds nothing (only its built-in chains,
# each with policy ACCEPT) is left out: the kernel creates tables on first use and never removes
# them, so on a fresh machine "no table" before the node and "empty table" after it are the same
# host state.
iptables_state() {
  local cmd
  for cmd in iptables-save ip6tables-save; do
    command -v "${cmd}" >/dev/null 2>&1 || continue
    "${cmd}" 2>/dev/null | sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]//' | awk '
      /^\*/ { block = $0 "\n"; content = 0; next }
      /^COMMIT/ { if (content) printf "%s%s\n", block, $0; block = ""; next }
      { block = block $0 "\n" }
      !/^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT *$/ { content = 1 }
    ' | sed "s/^/${cmd%-save}: /"
  done
}

host_state() {
  echo "== iptables"
  iptables_state
  echo "== routes"
  ip -4 route show table all 2>/dev/null | grep -v -e 'proto kernel' || true
  echo "== links"
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
  echo "== ipsets"
  ipset list -n 2>/dev/null | sort || true
  echo "== mounts"
  awk '{print $5, $9}' /proc/self/mountinfo | sort
  echo "== cgroups"
  find /sys/fs/cgroup -maxdepth 3 -type d \( -name 'kubepods*' -o -name 'agentgov*' \) 2>/dev/null | sort
  echo "== sysctls"
  local k
  for k in "${SYSCTLS[@]}"; do printf '%s = %s\n' "${k}" "$(sysctl -n "${k}" 2>/dev/null | tr '\t' ' ' || echo absent)"; done
  echo "== host paths"
  for k in "${HOST_PATHS[@]}"; do [[ -e "${k}" || -L "${k}" ]] && echo "${k}"; done
  echo "== processes"
  local comm
  for k in /proc/[0-9]*; do
    comm="$(cat "${k}/comm" 2>/dev/null)" || continue
    [[ "${comm}" =~ ${NODE_PROC_NAMES} ]] && echo "${comm}"
  done | sort || true
  echo "== lock"
  if flock -n "${LOCK_FILE}" true 2>/dev/null; then echo free; else echo held; fi
  [[ ! -e "${LOCK_FILE}.owner" ]] || echo "owner: $(cut -d' ' -f1 "${LOCK_FILE}.owner")"
  echo "== end"
}

# ---------------------------------------------------------------- processes --

pid_file() { printf '%s/pids/%s.pid\n' "${NODE_DIR}" "$1"; }
recorded_pid() { local f; f="$(pid_file "$1")"; [[ -f "${f}" ]] && cat -- "${f}" || true; }

is_ours_alive() {
  local pid=$1
  [[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/${pid}/status" 2>/dev/null && return 1
  # The lock holder is `sleep`; it is ours when the owner file names our state dir.
  if [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" == sleep ]]; then
    # An explicit status: a bare `return` in an EXIT trap returns the status before the trap.
    [[ "$(cat "${LOCK_FILE}.owner" 2>/dev/null)" == "${NODE_DIR} ${pid}" ]]
    return $?
  fi
  { tr '\0' '\n' < "/proc/${pid}/cmdline"; } 2>/dev/null | grep -qF -- "${NODE_DIR}/" || return 1
}

start_proc() { # start_proc NAME BINARY ARGS... (fd 9, the host lock, is inherited on purpose)
  local name=$1 bin=$2; shift 2
  local logf="${NODE_DIR}/logs/${name}.log"
  NO_PROXY="127.0.0.1,localhost,10.0.0.0/24,10.244.0.0/16" no_proxy="127.0.0.1,localhost,10.0.0.0/24,10.244.0.0/16" \
    setsid "${bin}" "$@" </dev/null >"${logf}" 2>&1 &
  local pid=$!
  await_exec "${pid}" "${NODE_DIR}"
  printf '%s\n' "${pid}" > "$(pid_file "${name}")"
  log "started ${name} (pid ${pid}, log ${logf})"
}

tail_log() {
  local f="${NODE_DIR}/logs/$1.log"
  [[ -f "${f}" ]] || return 0
  printf -- '----- last %s lines of %s -----\n' "${2:-40}" "${f}" >&2
  tail -n "${2:-40}" -- "${f}" >&2 || true
}

wait_until() { # wait_until NAME DESCRIPTION CMD...
  local name=$1 what=$2; shift 2
  local timeout="${AGENTGOV_NODE_UP_TIMEOUT:-120}" t0=${SECONDS}
  while ! "$@" >/dev/null 2>&1; do
    if ! is_ours_alive "$(recorded_pid "${name}")"; then
      tail_log "${name}" 60
      die "${name} exited while waiting for: ${what} (log: ${NODE_DIR}/logs/${name}.log)"
    fi
    if (( SECONDS - t0 >= timeout )); then
      tail_log "${name}" 60
      die "timed out after ${timeout}s waiting for: ${what} (log: ${NODE_DIR}/logs/${name}.log)"
    fi
    sleep 0.3
  done
  log "${what}: ok after $(( SECONDS - t0 ))s"
}

stop_pid() { # stop_pid PID GRACE: SIGTERM, then SIGKILL after GRACE seconds
  local pid=$1 grace=$2 deadline
  kill -TERM "${pid}" 2>/dev/null || return 0
  deadline=$(( SECONDS + grace ))
  while kill -0 "${pid}" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
  kill -KILL "${pid}" 2>/dev/null || true
  while kill -0 "${pid}" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/${pid}/status" 2>/dev/null; do sleep 0.1; done
}

# ---------------------------------------------------------------- lock -------

# One node per host: a `sleep` holds an flock on ${LOCK_FILE} from up until down (or until it
# is killed); ${LOCK_FILE}.owner names the state dir that holds it.
acquire_lock() {
  setsid flock -n -F -E 75 "${LOCK_FILE}" sleep infinity </dev/null >/dev/null 2>&1 9>&- &
  local pid=$! i
  for (( i = 0; i < 100; i++ )); do
    if ! kill -0 "${pid}" 2>/dev/null; then
      wait "${pid}" 2>/dev/null || true
      die "another node holds ${LOCK_FILE} (state dir: $(cut -d' ' -f1 "${LOCK_FILE}.owner" 2>/dev/null || echo unknown)); one node per host: stop it first (AGENTGOV_NODE_DIR=... node.sh down)"
    fi
    [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" == sleep ]] && break
    sleep 0.05
  done
  printf '%s %s\n' "${NODE_DIR}" "${pid}" > "${LOCK_FILE}.owner"
  printf '%s\n' "${pid}" > "$(pid_file lock)"
}

release_lock() {
  local pid; pid="$(recorded_pid lock)"
  if is_ours_alive "${pid}"; then
    stop_pid "${pid}" 1
    rm -f -- "${LOCK_FILE}.owner"
  fi
}

# ---------------------------------------------------------------- checks -----

preflight() {
  command -v curl >/dev/null || die "curl is missing"
  local k comm found=()
  for k in /proc/[0-9]*; do
    comm="$(cat "${k}/comm" 2>/dev/null)" || continue
    [[ "${comm}" =~ ${NODE_PROC_NAMES} ]] && found+=("${comm}(${k#/proc/})")
  done
  ((${#found[@]} == 0)) || die "a node from elsewhere is running on this host: ${found[*]}; stop it first (node.sh down with its AGENTGOV_NODE_DIR)"
  ip link show "${BRIDGE}" >/dev/null 2>&1 && die "a ${BRIDGE} bridge exists: another node (or its leftovers) owns the host network; remove it first"
  if iptables_state | grep -qE -- '(-N|^[a-z0-9]+: :)(KUBE-|CNI-|'"${CHAIN}"')'; then
    die "KUBE-*, CNI-* or ${CHAIN} iptables chains exist: another node, or leftovers of one; remove them first"
  fi
  if ip -4 route show table all proto "${ROUTE_PROTO}" 2>/dev/null | grep -q .; then
    die "routes with protocol ${ROUTE_PROTO} exist (a node's guard routes): another node, or leftovers of one"
  fi
  if ipset list -n 2>/dev/null | grep -q '^KUBE-'; then
    die "KUBE-* ipsets exist (a NetworkPolicy controller's): another node, or leftovers of one"
  fi
  if [[ -n "$(find /sys/fs/cgroup -maxdepth 2 -type d -name 'kubepods*' 2>/dev/null)" ]]; then
    die "kubepods cgroups exist under /sys/fs/cgroup: another node, or leftovers of one"
  fi
}

# ---------------------------------------------------------------- config -----

gen_cert() { # gen_cert BASENAME SUBJECT EKU [SAN]: signed by the cluster CA
  local base=$1 subj=$2 eku=$3 san=${4:-} ca="${CLUSTER_DIR}/pki/ca"
  openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "${base}.key" -out "${base}.csr" \
    -subj "${subj}" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=${eku}"
    [[ -n "${san}" ]] && echo "subjectAltName=${san}"
  } > "${base}.ext"
  openssl x509 -req -sha256 -days 30 -in "${base}.csr" -CA "${ca}.crt" -CAkey "${ca}.key" \
    -CAcreateserial -CAserial "${base}.srl" -extfile "${base}.ext" -out "${base}.crt" 2>/dev/null
  rm -f -- "${base}.csr" "${base}.ext" "${base}.srl"
}

kubeconfig() { # kubeconfig FILE USER BASENAME
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: agentgov-e2e
  cluster:
    server: ${AGENTGOV_APISERVER_URL}
    certificate-authority: ${CLUSTER_DIR}/pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $3.crt
    client-key: $3.key
contexts:
- name: agentgov-e2e
  context: {cluster: agentgov-e2e, user: $2}
current-context: agentgov-e2e
EOF
  chmod 600 "$1"
}

write_configs() {
  local c="${NODE_DIR}/config" p="${NODE_DIR}/pki"
  mkdir -p "${c}" "${p}" "${NODE_DIR}/cni/net.d"
  (
    umask 077
    gen_cert "${p}/kubelet" "/O=system:nodes/CN=system:node:${NODE_NAME}" clientAuth
    gen_cert "${p}/kubelet-serving" "/CN=${NODE_NAME}" serverAuth "IP:${NODE_IP},DNS:${NODE_NAME}"
    gen_cert "${p}/kube-proxy" "/CN=system:kube-proxy" clientAuth
    gen_cert "${p}/kube-router" "/CN=agentgov:kube-router" clientAuth
  )
  kubeconfig "${c}/kubelet.kubeconfig" "system:node:${NODE_NAME}" "${p}/kubelet"
  kubeconfig "${c}/kube-proxy.kubeconfig" system:kube-proxy "${p}/kube-proxy"
  kubeconfig "${c}/kube-router.kubeconfig" agentgov:kube-router "${p}/kube-router"
  # What kube-router's firewall controller reads (its own manifests' ClusterRole, reduced).
  cat > "${c}/kube-router-rbac.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "agentgov:kube-router"}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "agentgov:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "agentgov:kube-router"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "agentgov:kube-router"}
EOF

  local ctr="${NODE_DIR}/containerd"
  cat > "${c}/containerd.toml" <<EOF
version = 3
root = "${ctr}/root"
state = "${ctr}/state"
# Plugins that would write outside the state dir, or that this node does not use.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "${ctr}/containerd.sock"
[ttrpc]
  address = "${ctr}/containerd.sock.ttrpc"
[debug]
  address = ""

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  # Every registry resolves to a closed loopback port: an image that is not on the node fails
  # to pull here and no request (nor DNS query) leaves the host.
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "${c}/certs.d"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "${PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  # No process here has CAP_SYS_RESOURCE: without this runc fails every sandbox ("can't get
  # final child's PID from pipe") when asked for a lower oom_score_adj than containerd's.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "${RUNC}"
        Root = "${ctr}/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["${CNI_BIN_DIR}"]
    conf_dir = "${NODE_DIR}/cni/net.d"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF

  mkdir -p "${c}/certs.d/_default"
  cat > "${c}/certs.d/_default/hosts.toml" <<EOF
server = "https://127.0.0.1:9"
[host."https://127.0.0.1:9"]
  capabilities = ["pull", "resolve"]
EOF

  # Bridge + host-local IPAM. No ipMasq: nothing a Pod sends is meant to leave the host.
  cat > "${NODE_DIR}/cni/net.d/10-agentgov.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "agentgov",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${POD_CIDR}", "gateway": "${BRIDGE_IP}"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "${NODE_DIR}/cni/ipam"
      }
    }
  ]
}
EOF

  cat > "${c}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has cgroup v1 only (the cgroup2 mount has no controllers).
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://${ctr}/containerd.sock
address: ${NODE_IP}
port: ${KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${KUBELET_HEALTHZ_PORT}
tlsCertFile: ${p}/kubelet-serving.crt
tlsPrivateKeyFile: ${p}/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${CLUSTER_DIR}/pki/ca.crt}
authorization: {mode: Webhook}
podLogsDir: ${NODE_DIR}/pod-logs
# No cluster DNS and no host resolver in Pods: addresses come by environment.
resolvConf: ""
clusterDomain: cluster.local
failSwapOn: false
oomScoreAdj: 0
protectKernelDefaults: false
rotateCertificates: false
serializeImagePulls: false
staticPodPath: ""
# The node shares the host disk with build caches: never collect images (100 turns it off; the
# test images are imported, not pullable), and evict only when the disk is really full (an
# absolute floor; 1 % of a large, busy disk evicted every Pod while gigabytes were free).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "256Mi", imagefs.available: "256Mi", nodefs.inodesFree: "1%"}
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
shutdownGracePeriod: 0s
EOF

  cat > "${c}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: ${c}/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: ${POD_SUPERNET}
hostnameOverride: ${NODE_NAME}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:${PROXY_HEALTHZ_PORT}
metricsBindAddress: 127.0.0.1:${PROXY_METRICS_PORT}
nodePortAddresses: ["${NODE_IP}/32"]
# Leave the host's conntrack settings and route_localnet alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
iptables: {localhostNodePorts: false, masqueradeAll: false}
EOF
}

# ---------------------------------------------------------------- network ----

save_sysctls() {
  local k
  for k in "${SYSCTLS[@]}"; do
    sysctl -n "${k}" >/dev/null 2>&1 && printf '%s=%s\n' "${k}" "$(sysctl -n "${k}" | tr '\t' ' ')"
  done > "${NODE_DIR}/host/sysctls"
  for k in "${HOST_PATHS[@]}"; do [[ -e "${k}" || -L "${k}" ]] && echo "${k}"; done > "${NODE_DIR}/host/paths"
  # Our own record that the host network is ours to undo (down reads it, even after a crash).
  : > "${NODE_DIR}/host/network"
}

network_up() {
  # The bridge first, so route_localnet is set before any Pod, and its /24 route exists.
  ip link add "${BRIDGE}" type bridge
  ip addr add "${BRIDGE_IP}/24" dev "${BRIDGE}"
  ip link set "${BRIDGE}" up
  sysctl -qw "net.ipv4.conf.${BRIDGE}.route_localnet=1"
  sysctl -qw net.ipv4.ip_forward=1
  # The host answers a Pod's packet for an unused Service or Pod address with "no route" every
  # time, not once a second per Pod (the default ICMP rate limit), so refusals are prompt.
  sysctl -qw net.ipv4.icmp_ratelimit=0
  # Guards: Service and Pod addresses never take the default route off the host. The Service
  # range is local to the host: kube-proxy's OUTPUT and PREROUTING DNAT send a Service address
  # with endpoints to its Pod; any other address in the range ends on the host itself (refused
  # at once). An unreachable route would also stop the host's own connections to Services (the
  # API server calling a webhook), which are routed before the OUTPUT chain rewrites them.
  ip route add local "${AGENTGOV_SERVICE_CIDR}" dev lo table main proto "${ROUTE_PROTO}"
  # Pod addresses beyond this node's /24 (on cni0) are unreachable.
  ip route add unreachable "${POD_SUPERNET}" proto "${ROUTE_PROTO}"
  # The kubernetes Service (10.0.0.1:443) is the API server on loopback, for Pods and host.
  iptables -w -t nat -N "${CHAIN}"
  iptables -w -t nat -A "${CHAIN}" -d 10.0.0.1/32 -p tcp --dport 443 \
    -j DNAT --to-destination "127.0.0.1:${AGENTGOV_APISERVER_PORT}"
  iptables -w -t nat -I PREROUTING 1 -j "${CHAIN}"
  iptables -w -t nat -I OUTPUT 1 -j "${CHAIN}"
  # Pods talk to each other, Services and the host; nothing they send is forwarded elsewhere.
  iptables -w -t filter -N "${CHAIN}"
  iptables -w -t filter -A "${CHAIN}" -i "${BRIDGE}" ! -o "${BRIDGE}" -j REJECT --reject-with icmp-net-unreachable
  iptables -w -t filter -I FORWARD 1 -j "${CHAIN}"
}

delete_chains() { # delete_chains CMD PATTERN: flush, unlink and delete matching chains
  local cmd=$1 pattern=$2 table chain rule
  command -v "${cmd}" >/dev/null 2>&1 || return 0
  for table in raw mangle nat filter security; do
    "${cmd}-save" -t "${table}" >/dev/null 2>&1 || continue
    # Rules in built-in chains that jump to a matching chain.
    while read -r rule; do
      [[ -n "${rule}" ]] || continue
      eval "${cmd} -w -t ${table} ${rule/-A /-D }" 2>/dev/null || true
    done < <("${cmd}-save" -t "${table}" | grep -E "^-A [A-Z]+ .*-j (${pattern})" | grep -vE "^-A (${pattern})" || true)
    for chain in $("${cmd}-save" -t "${table}" | sed -n 's/^:\([^ ]*\) .*/\1/p' | grep -E "^(${pattern})" || true); do
      "${cmd}" -w -t "${table}" -F "${chain}" 2>/dev/null || true
    done
    for chain in $("${cmd}-save" -t "${table}" | sed -n 's/^:\([^ ]*\) .*/\1/p' | grep -E "^(${pattern})" || true); do
      "${cmd}" -w -t "${table}" -X "${chain}" 2>/dev/null || true
    done
  done
}

network_down() {
  [[ -f "${NODE_DIR}/host/network" ]] || return 0
  if [[ -x "${BIN_DIR}/kube-proxy" ]]; then
    "${BIN_DIR}/kube-proxy" --cleanup >>"${NODE_DIR}/logs/kube-proxy-cleanup.log" 2>&1 || true
  fi
  # What --cleanup leaves (kubelet's and kube-proxy's canaries, kube-router's firewall chains,
  # CNI plugins' chains, ours), then kube-router's ipsets, which the chains referenced.
  delete_chains iptables "KUBE-|CNI-|${CHAIN}"
  delete_chains ip6tables "KUBE-|CNI-"
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-|inet6:KUBE-)' || true); do
    ipset destroy "${set}" 2>/dev/null || log "could not destroy ipset ${set}"
  done
  ip route flush table all proto "${ROUTE_PROTO}" 2>/dev/null || true
  local link
  for link in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//'); do
    [[ "$(cat "/sys/class/net/${link}/master/ifindex" 2>/dev/null)" == "$(cat "/sys/class/net/${BRIDGE}/ifindex" 2>/dev/null)" ]] \
      && ip link del "${link}" 2>/dev/null || true
  done
  ip link del "${BRIDGE}" 2>/dev/null || true
  rm -f -- "${NODE_DIR}/host/network"
}

restore_sysctls() {
  [[ -f "${NODE_DIR}/host/sysctls" ]] || return 0
  local line
  while IFS= read -r line; do
    [[ -n "${line}" ]] || continue
    [[ "$(sysctl -n "${line%%=*}" 2>/dev/null | tr '\t' ' ')" == "${line#*=}" ]] && continue
    sysctl -qw "${line%%=*}=${line#*=}" 2>/dev/null || log "could not restore ${line}"
  done < "${NODE_DIR}/host/sysctls"
}

# ---------------------------------------------------------------- teardown ---

kill_pods() { # every process in a kubepods cgroup, then the shims of our containerd
  local round pids shim
  for round in 1 2 3 4 5 6 7 8 9 10; do
    pids="$(find /sys/fs/cgroup/pids/kubepods* /sys/fs/cgroup/memory/kubepods* -name cgroup.procs \
      -exec cat {} + 2>/dev/null | sort -u | tr '\n' ' ' || true)"
    [[ -n "${pids// /}" ]] || break
    # shellcheck disable=SC2086
    kill -KILL ${pids} 2>/dev/null || true
    sleep 0.3
  done
  for shim in /proc/[0-9]*; do
    [[ "$(cat "${shim}/comm" 2>/dev/null)" == containerd-shim* ]] || continue
    { tr '\0' '\n' < "${shim}/cmdline"; } 2>/dev/null | grep -qF -- "${NODE_DIR}/" || continue
    stop_pid "${shim#/proc/}" 2
  done
}

unmount_under() { # unmount_under DIR: every mount below DIR, deepest first
  local dir=$1 mnt i
  for i in 1 2 3; do
    local -a mounts=()
    mapfile -t mounts < <(awk -v d="${dir}/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    ((${#mounts[@]})) || return 0
    for mnt in "${mounts[@]}"; do
      umount "${mnt}" 2>/dev/null || umount -l "${mnt}" 2>/dev/null || true
    done
  done
}

remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods*; do
    [[ -d "${d}" ]] || continue
    find "${d}" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "${d}" ]] && log "could not remove cgroup ${d}"
  done
  return 0
}

node_down() {
  [[ -f "${NODE_DIR}/${MARKER}" ]] || return 0
  local name pid i
  for (( i=${#NODE_PROCS[@]}-1; i>=0; i-- )); do
    name="${NODE_PROCS[i]}"
    [[ "${name}" == containerd ]] && kill_pods
    [[ "${name}" == lock ]] && continue
    pid="$(recorded_pid "${name}")"
    is_ours_alive "${pid}" && stop_pid "${pid}" 10
  done
  kill_pods
  unmount_under "${NODE_DIR}"
  local path
  for path in /var/lib/kubelet /run/containerd /var/run/netns /run/netns; do
    unmount_under "${path}"
  done
  remove_cgroups
  network_down
  restore_sysctls
  # Host paths the node created (kubelet and containerd hard-code a few).
  if [[ -f "${NODE_DIR}/host/paths" ]]; then
    for path in "${HOST_PATHS[@]}"; do
      grep -qxF -- "${path}" "${NODE_DIR}/host/paths" && continue
      [[ -e "${path}" || -L "${path}" ]] && rm -rf --one-file-system -- "${path}"
    done
  fi
  rm -rf --one-file-system -- "${NODE_DIR:?}/containerd" "${NODE_DIR:?}/kubelet" "${NODE_DIR:?}/cni"
  release_lock
  rm -f -- "${NODE_DIR}"/pids/*.pid "${NODE_DIR}/env"
}

# ---------------------------------------------------------------- commands ---

resolve_bins() {
  bash "${REPO_ROOT}/e2e/controlplane/build.sh" || die "building the Kubernetes binaries failed"
  BIN_DIR="$(bash "${REPO_ROOT}/e2e/controlplane/build.sh" --print-bin-dir)"
  bash "${SCRIPT_DIR}/build.sh" || die "building containerd and the node images failed"
  NODE_BUILD_DIR="$(bash "${SCRIPT_DIR}/build.sh" --print-dir)"
  local b
  for b in kubelet kube-proxy kube-scheduler kubectl; do
    [[ -x "${BIN_DIR}/${b}" ]] || die "missing ${BIN_DIR}/${b}"
  done
  [[ -x "${NODE_BUILD_DIR}/bin/kube-router" ]] || die "missing ${NODE_BUILD_DIR}/bin/kube-router"
  RUNC="$(command -v runc)" || die "runc is missing (hack/node-packages.sh)"
  CNI_BIN_DIR=/usr/lib/cni
  [[ -x "${CNI_BIN_DIR}/bridge" && -x "${CNI_BIN_DIR}/host-local" && -x "${CNI_BIN_DIR}/loopback" ]] \
    || die "CNI plugins missing in ${CNI_BIN_DIR} (hack/node-packages.sh)"
  local k8s; k8s="$(bash "${REPO_ROOT}/e2e/controlplane/build.sh" --print-version)"
  PAUSE_IMAGE="localhost/agentgov/pause:${k8s}"
  TEST_IMAGE="localhost/agentgov/busybox:test"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

import_images() {
  local ctr=("${NODE_BUILD_DIR}/bin/ctr" --address "${NODE_DIR}/containerd/containerd.sock" -n k8s.io)
  local archive t0=${SECONDS}
  # shellcheck disable=SC2206
  local -a archives=("${NODE_BUILD_DIR}/images/pause.oci.tar" "${NODE_BUILD_DIR}/images/busybox.oci.tar" ${AGENTGOV_NODE_IMAGES:-})
  for archive in "${archives[@]}"; do
    [[ -f "${archive}" ]] || die "no image archive ${archive}"
    "${ctr[@]}" images import --local "${archive}" >>"${NODE_DIR}/logs/images.log" 2>&1 \
      || { tail -5 "${NODE_DIR}/logs/images.log" >&2; die "ctr images import ${archive} failed"; }
  done
  log "imported ${#archives[@]} image archives in $(( SECONDS - t0 ))s"
  # The test image by digest too (name@sha256:<manifest digest>), as an agent's approved
  # runtime.images pins it: an imported image is known only by its tag until it is named so.
  local digest
  digest="$("${ctr[@]}" images ls "name==${TEST_IMAGE}" 2>/dev/null | awk 'NR == 2 {print $3}')"
  [[ "${digest}" == sha256:* ]] || die "no manifest digest for ${TEST_IMAGE}"
  TEST_IMAGE_PINNED="${TEST_IMAGE%:*}@${digest}"
  "${ctr[@]}" images tag --force "${TEST_IMAGE}" "${TEST_IMAGE_PINNED}" >>"${NODE_DIR}/logs/images.log" 2>&1 \
    || die "ctr images tag ${TEST_IMAGE_PINNED} failed"
}

node_ready() {
  [[ "$(kubectl get node "${NODE_NAME}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] || return 1
  # nodelifecycle removes the not-ready taint once it sees the node Ready.
  [[ -z "$(kubectl get node "${NODE_NAME}" -o jsonpath='{.spec.taints}' 2>/dev/null)" ]]
}

write_env() {
  {
    cat "${CLUSTER_DIR}/env"
    printf 'export %s=%q\n' \
      AGENTGOV_NODE_DIR "${NODE_DIR}" \
      AGENTGOV_NODE_NAME "${NODE_NAME}" \
      AGENTGOV_NODE_IP "${NODE_IP}" \
      AGENTGOV_POD_CIDR "${POD_CIDR}" \
      AGENTGOV_NODE_BIN "${NODE_BUILD_DIR}/bin" \
      AGENTGOV_NODE_IMAGE_DIR "${NODE_BUILD_DIR}/images" \
      AGENTGOV_TEST_IMAGE "${TEST_IMAGE}" \
      AGENTGOV_TEST_IMAGE_PINNED "${TEST_IMAGE_PINNED}" \
      AGENTGOV_PAUSE_IMAGE "${PAUSE_IMAGE}" \
      CONTAINERD_ADDRESS "${NODE_DIR}/containerd/containerd.sock" \
      CONTAINERD_NAMESPACE k8s.io
  } > "${NODE_DIR}/env"
}

cmd_up() {
  local t_start=${SECONDS}
  [[ "$(id -u)" == 0 ]] || die "a node needs root (kubelet, containerd, iptables, cgroups)"
  bash "${REPO_ROOT}/hack/node-packages.sh"
  resolve_bins
  if [[ -d "${NODE_DIR}" ]]; then
    [[ -f "${NODE_DIR}/${MARKER}" ]] || [[ -z "$(ls -A -- "${NODE_DIR}")" ]] \
      || die "${NODE_DIR} exists and is not a node state dir; refusing to use it"
    is_ours_alive "$(recorded_pid lock)" && die "a node is already running in ${NODE_DIR} (node.sh down)"
    log "undoing what a previous node in ${NODE_DIR} left"
    node_down
    AGENTGOV_CLUSTER_DIR="${CLUSTER_DIR}" bash "${CLUSTER_SH}" down >/dev/null 2>&1 || true
    rm -rf --one-file-system -- "${NODE_DIR:?}"
  fi
  mkdir -p "${NODE_DIR}"/{pids,logs,host,config}
  : > "${NODE_DIR}/${MARKER}"
  acquire_lock
  UP_IN_PROGRESS=1
  trap 'rc=$?; if [[ -n "${UP_IN_PROGRESS:-}" ]]; then log "up failed; undoing it"; node_down; AGENTGOV_CLUSTER_DIR="${CLUSTER_DIR}" bash "${CLUSTER_SH}" down >/dev/null 2>&1 || true; fi; exit "${rc}"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  preflight

  AGENTGOV_CLUSTER_DIR="${CLUSTER_DIR}" AGENTGOV_CONTROLPLANE_BIN="${BIN_DIR}" bash "${CLUSTER_SH}" up >/dev/null \
    || die "the control plane did not start"
  # shellcheck disable=SC1091
  source "${CLUSTER_DIR}/env"
  NODE_IP="$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')"
  [[ -n "${NODE_IP}" ]] || NODE_IP="$(hostname -I 2>/dev/null | awk '{print $1}')"
  [[ -n "${NODE_IP}" ]] || die "cannot find this host's address for the node"
  KUBELET_PORT="$(free_port)"; KUBELET_HEALTHZ_PORT="$(free_port)"
  PROXY_HEALTHZ_PORT="$(free_port)"; PROXY_METRICS_PORT="$(free_port)"; ROUTER_HEALTH_PORT="$(free_port)"
  write_configs
  save_sysctls
  network_up
  log "network: ${BRIDGE} ${BRIDGE_IP}/24, guard routes for ${AGENTGOV_SERVICE_CIDR} and ${POD_SUPERNET}, 10.0.0.1:443 -> 127.0.0.1:${AGENTGOV_APISERVER_PORT}"

  # A dead proxy as a second guard: nothing containerd fetches may leave the host.
  HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 \
    start_proc containerd "${NODE_BUILD_DIR}/bin/containerd" --config "${NODE_DIR}/config/containerd.toml"
  wait_until containerd "containerd answers" \
    "${NODE_BUILD_DIR}/bin/ctr" --address "${NODE_DIR}/containerd/containerd.sock" version
  import_images
  # The shim is found on PATH.
  PATH="${NODE_BUILD_DIR}/bin:${PATH}" start_proc kube-proxy "${BIN_DIR}/kube-proxy" \
    --config="${NODE_DIR}/config/kube-proxy.yaml" --v=1
  PATH="${NODE_BUILD_DIR}/bin:${PATH}" start_proc kubelet "${BIN_DIR}/kubelet" \
    --config="${NODE_DIR}/config/kubelet.yaml" \
    --kubeconfig="${NODE_DIR}/config/kubelet.kubeconfig" \
    --root-dir="${NODE_DIR}/kubelet" \
    --cert-dir="${NODE_DIR}/pki" \
    --hostname-override="${NODE_NAME}" \
    --node-ip="${NODE_IP}" \
    --v=1
  wait_until kubelet "node ${NODE_NAME} Ready and untainted" node_ready
  wait_until kube-proxy "kube-proxy healthz" curl -fsS --max-time 2 "http://127.0.0.1:${PROXY_HEALTHZ_PORT}/healthz"
  # NetworkPolicy: kube-router's firewall controller only (no routing, no service proxy, no CNI).
  kubectl apply -f "${NODE_DIR}/config/kube-router-rbac.yaml" >/dev/null
  start_proc kube-router "${NODE_BUILD_DIR}/bin/kube-router" \
    --kubeconfig="${NODE_DIR}/config/kube-router.kubeconfig" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-ipv4=true --enable-ipv6=false --hostname-override="${NODE_NAME}" \
    --service-cluster-ip-range="${AGENTGOV_SERVICE_CIDR}" \
    --health-port="${ROUTER_HEALTH_PORT}" --metrics-port=0 --v=1
  wait_until kube-router "kube-router healthz" curl -fsS --max-time 2 "http://127.0.0.1:${ROUTER_HEALTH_PORT}/healthz"
  write_env
  UP_IN_PROGRESS=""
  trap - EXIT INT TERM
  log "node ${NODE_NAME} ready in $(( SECONDS - t_start ))s (state ${NODE_DIR}; source ${NODE_DIR}/env)"
  printf '%s\n' "${NODE_DIR}"
}

cmd_down() {
  [[ -f "${NODE_DIR}/${MARKER}" ]] || { log "no node state in ${NODE_DIR}; nothing to stop"; return 0; }
  # The bin dirs are needed for kube-proxy --cleanup; resolve them without building.
  BIN_DIR="${BIN_DIR:-$(bash "${REPO_ROOT}/e2e/controlplane/build.sh" --print-bin-dir)}"
  node_down
  AGENTGOV_CLUSTER_DIR="${CLUSTER_DIR}" bash "${CLUSTER_SH}" down >/dev/null 2>&1 || true
  log "node stopped and host restored; logs in ${NODE_DIR}/logs"
}

cmd_status() {
  local name pid rc=1
  for name in "${NODE_PROCS[@]}"; do
    pid="$(recorded_pid "${name}")"
    if is_ours_alive "${pid}"; then echo "${name}: running (pid ${pid})"; rc=0
    else echo "${name}: not running"; fi
  done
  AGENTGOV_CLUSTER_DIR="${CLUSTER_DIR}" bash "${CLUSTER_SH}" status || true
  return "${rc}"
}

cmd_import() {
  [[ -f "${NODE_DIR}/env" ]] || die "no node is running in ${NODE_DIR}"
  # shellcheck disable=SC1091
  source "${NODE_DIR}/env"
  local archive
  for archive in "$@"; do
    [[ -f "${archive}" ]] || die "no image archive ${archive}"
    "${AGENTGOV_NODE_BIN}/ctr" --address "${CONTAINERD_ADDRESS}" -n k8s.io images import --local "${archive}" \
      >>"${NODE_DIR}/logs/images.log" 2>&1 || die "ctr images import ${archive} failed (${NODE_DIR}/logs/images.log)"
  done
  log "imported $# image archives"
}

CMD_PID=""
BEFORE_STATE=""
exec_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "${CMD_PID}" ]] && kill -0 "${CMD_PID}" 2>/dev/null; then
    kill -TERM "${CMD_PID}" 2>/dev/null || true
    wait "${CMD_PID}" 2>/dev/null || true
  fi
  cmd_down || true
  if [[ -n "${BEFORE_STATE}" ]]; then
    local after
    after="$(host_state)"
    if [[ "${after}" != "${BEFORE_STATE}" ]]; then
      log "the host is not as it was before the node (< before, > after):"
      diff <(printf '%s\n' "${BEFORE_STATE}") <(printf '%s\n' "${after}") >&2 || true
      [[ "${AGENTGOV_NODE_STRICT_CLEAN:-1}" == 0 ]] || { (( rc != 0 )) || rc=1; }
    else
      log "host state after teardown equals the state before (iptables, routes, links, mounts, cgroups, sysctls, paths, processes, lock)"
    fi
  fi
  if (( rc == 0 )) && [[ -z "${AGENTGOV_KEEP_NODE_DIR:-}" ]] && [[ -f "${NODE_DIR}/${MARKER}" ]]; then
    rm -rf --one-file-system -- "${NODE_DIR:?}"
  elif (( rc != 0 )); then
    log "logs: ${NODE_DIR}/logs and ${CLUSTER_DIR}/logs"
    if [[ -n "${CI:-}" ]]; then
      local f
      for f in "${NODE_DIR}"/logs/*.log; do
        [[ -f "${f}" && "${f}" != */command.log ]] && tail_log "$(basename "${f}" .log)" 60
      done
      print_failures "${NODE_DIR}/logs/command.log"
      log "failed with exit ${rc}; logs: ${NODE_DIR}/logs and ${CLUSTER_DIR}/logs"
    fi
  fi
  exit "${rc}"
}

cmd_exec() {
  [[ "${1:-}" == "--" ]] && shift
  (( $# > 0 )) || die "usage: $0 exec -- CMD [ARGS...]"
  BEFORE_STATE="$(host_state)"
  trap exec_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  cmd_up >/dev/null
  trap exec_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # shellcheck disable=SC1091
  source "${NODE_DIR}/env"
  local rc=0
  start_command "${NODE_DIR}/logs/command.log" "$@"
  wait "${CMD_PID}" || rc=$?
  CMD_PID=""
  (( rc == 0 )) || log "command failed with exit ${rc}: $*"
  exit "${rc}"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "${cmd}" in
    up|down|status|import)
      NODE_DIR="$(abspath "${AGENTGOV_NODE_DIR:-${REPO_ROOT}/.cache/node/run}")" ;;
    exec)
      NODE_DIR="$(abspath "${AGENTGOV_NODE_DIR:-${REPO_ROOT}/.cache/node/run-$(date +%Y%m%d-%H%M%S)-$$}")" ;;
    host-state) host_state; return 0 ;;
    -h|--help|help) usage; return 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  CLUSTER_DIR="${NODE_DIR}/cluster"
  "cmd_${cmd}" "$@"
}

main "$@"
