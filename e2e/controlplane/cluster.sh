#!/usr/bin/env bash
# A throwaway Kubernetes control plane on loopback:
# etcd + kube-apiserver + kube-controller-manager + kube-scheduler (no kubelet: e2e/node adds
# one).
#
# Usage:
#   cluster.sh up              start it; prints the state dir (source "$DIR/env")
#   cluster.sh down            stop the processes recorded in the state dir
#   cluster.sh status          show whether the recorded processes are running
#   cluster.sh exec -- CMD...  up, run CMD with the cluster env exported, down;
#                              exits with CMD's status
#
# Environment (all optional):
#   AGENTGOV_CLUSTER_DIR       state dir (default <repo>/.cache/cluster/default,
#                              for exec: <repo>/.cache/cluster/exec-<time>-<pid>)
#   AGENTGOV_APISERVER_PORT    kube-apiserver secure port (default: a free port)
#   AGENTGOV_ETCD_PORT         etcd client port (default: a free port)
#   AGENTGOV_WEBHOOK_HOSTPORT  host:port of the admission webhook the API server
#                              presents its client cert to (default 127.0.0.1:18443;
#                              a "*" fallback entry covers any other host:port)
#   AGENTGOV_UP_TIMEOUT        seconds to wait for each readiness stage (default 120)
#   AGENTGOV_KCM_CONTROLLERS   kube-controller-manager --controllers value
#   AGENTGOV_SCHEDULER         0: do not start kube-scheduler (default 1)
#   AGENTGOV_APISERVER_FLAGS   extra kube-apiserver flags, space-separated (default none), e.g.
#                              --runtime-config=admissionregistration.k8s.io/v1/mutatingadmissionpolicies=false
#   AGENTGOV_CONTROLPLANE_BIN  use prebuilt binaries from this dir (skips build.sh)
#   AGENTGOV_CACHE_DIR         passed to build.sh (binary cache root)
#   AGENTGOV_KEEP_CLUSTER_DIR  exec: keep the state dir even when CMD succeeds
#   AGENTGOV_KILL_GRACE        down: seconds between SIGTERM and SIGKILL (default 15)
#   CI                         exec: on failure also print the tail of each log
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "${SCRIPT_DIR}/../.." && pwd -P)"
# shellcheck source=../lib/command-output.sh
source "${REPO_ROOT}/e2e/lib/command-output.sh"
# shellcheck source=../lib/exec-wait.sh
source "${REPO_ROOT}/e2e/lib/exec-wait.sh"
PROCS=(etcd kube-apiserver kube-controller-manager kube-scheduler) # start order
MARKER=".agentgov-cluster"
SERVICE_CIDR="10.0.0.0/24" # the kubernetes Service is 10.0.0.1 (in the serving certificate)
# Controllers: what the e2e suite always needed, and what a node's Pods need (nodelifecycle
# clears the not-ready taint; endpointslice* for Services; podgc; the workload controllers;
# disruption for PodDisruptionBudgets).
KCM_CONTROLLERS="serviceaccount,serviceaccount-token,namespace,garbagecollector,deployment,replicaset,clusterrole-aggregation,root-ca-cert-publisher,nodelifecycle,endpointslice,endpointslicemirroring,podgc,daemonset,statefulset,job,disruption"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

abspath() { # abspath PATH -> absolute path (the path need not exist yet)
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$(pwd -P)" "$1" ;;
  esac
}

# ---------------------------------------------------------------- processes --

pid_file() { printf '%s/pids/%s.pid\n' "${CLUSTER_DIR}" "$1"; }

# Is PID alive and one of ours (its command line mentions the state dir)?
is_ours_alive() {
  local pid=$1
  [[ -n "${pid}" ]] || return 1
  kill -0 "${pid}" 2>/dev/null || return 1
  if [[ -r "/proc/${pid}/status" ]]; then
    grep -q '^State:[[:space:]]*Z' "/proc/${pid}/status" && return 1
    { tr '\0' '\n' < "/proc/${pid}/cmdline"; } 2>/dev/null | grep -qF -- "${CLUSTER_DIR}/" || return 1
  fi
  return 0
}

recorded_pid() {
  local f; f="$(pid_file "$1")"
  if [[ -f "${f}" ]]; then cat -- "${f}"; fi
}

tail_log() { # tail_log NAME [LINES]
  local f="${CLUSTER_DIR}/logs/$1.log"
  if [[ -f "${f}" ]]; then
    printf -- '----- last %s lines of %s -----\n' "${2:-40}" "${f}" >&2
    tail -n "${2:-40}" -- "${f}" >&2 || true
    printf -- '----- end of %s -----\n' "$1.log" >&2
  fi
}

stop_all() { # SIGTERM (reverse start order), wait, then SIGKILL; never fails
  local grace="${AGENTGOV_KILL_GRACE:-15}" name pid i any=0
  local -a live=()
  for (( i=${#PROCS[@]}-1; i>=0; i-- )); do
    name="${PROCS[i]}"; pid="$(recorded_pid "${name}")"
    if is_ours_alive "${pid}"; then
      kill -TERM "${pid}" 2>/dev/null || true
      live+=("${pid}"); any=1
    fi
  done
  (( any )) || return 0
  local deadline=$(( SECONDS + grace ))
  while (( SECONDS < deadline )); do
    local still=0
    for pid in "${live[@]}"; do is_ours_alive "${pid}" && still=1; done
    (( still )) || break
    sleep 0.2
  done
  for pid in "${live[@]}"; do
    if is_ours_alive "${pid}"; then
      log "pid ${pid} ignored SIGTERM for ${grace}s, sending SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
  done
  # reap our own children, if any
  for pid in "${live[@]}"; do wait "${pid}" 2>/dev/null || true; done
}

start_proc() { # start_proc NAME BINARY ARGS...
  local name=$1 bin=$2; shift 2
  local logf="${CLUSTER_DIR}/logs/${name}.log"
  # Own session: not hit by the terminal's Ctrl-C, survives the parent shell.
  # NO_PROXY: never send loopback traffic (webhook calls, etcd) through a proxy.
  if command -v setsid >/dev/null 2>&1; then
    NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,${NO_PROXY}}" no_proxy="127.0.0.1,localhost${no_proxy:+,${no_proxy}}" \
      setsid "${bin}" "$@" </dev/null >"${logf}" 2>&1 &
  else
    NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,${NO_PROXY}}" no_proxy="127.0.0.1,localhost${no_proxy:+,${no_proxy}}" \
      "${bin}" "$@" </dev/null >"${logf}" 2>&1 &
  fi
  local pid=$!
  await_exec "${pid}" "${CLUSTER_DIR}"
  printf '%s\n' "${pid}" > "$(pid_file "${name}")"
  log "started ${name} (pid ${pid}, log ${logf})"
}

# wait_until NAME DESCRIPTION CMD... : poll CMD until it succeeds, while the
# process NAME is alive, for at most AGENTGOV_UP_TIMEOUT seconds.
wait_until() {
  local name=$1 what=$2; shift 2
  local timeout="${AGENTGOV_UP_TIMEOUT:-120}" t0=${SECONDS}
  while true; do
    if "$@" >/dev/null 2>&1; then
      log "${what}: ok after $(( SECONDS - t0 ))s"
      return 0
    fi
    if ! is_ours_alive "$(recorded_pid "${name}")"; then
      tail_log "${name}" 60
      die "${name} exited while waiting for: ${what} (log: ${CLUSTER_DIR}/logs/${name}.log)"
    fi
    if (( SECONDS - t0 >= timeout )); then
      tail_log "${name}" 60
      die "timed out after ${timeout}s waiting for: ${what} (log: ${CLUSTER_DIR}/logs/${name}.log)"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------- ports ------

free_ports() { # free_ports N -> N distinct free loopback TCP ports
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
  else # fallback: random high ports nobody answers on
    local n=$1 p out=()
    while (( ${#out[@]} < n )); do
      p=$(( 20000 + RANDOM % 12000 ))
      [[ " ${out[*]} " == *" ${p} "* ]] && continue
      if ! (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then out+=("${p}"); fi
    done
    echo "${out[*]}"
  fi
}

# ---------------------------------------------------------------- PKI --------

b64() { openssl base64 -A < "$1"; }

gen_ca() { # gen_ca BASENAME CN
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -keyout "$1.key" -out "$1.crt" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}

gen_cert() { # gen_cert BASENAME CA_BASENAME SUBJECT EKU [SAN]
  local base=$1 ca=$2 subj=$3 eku=$4 san=${5:-}
  openssl req -new -newkey rsa:2048 -nodes -sha256 \
    -keyout "${base}.key" -out "${base}.csr" -subj "${subj}" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=${eku}"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid"
    [[ -n "${san}" ]] && echo "subjectAltName=${san}"
  } > "${base}.ext"
  openssl x509 -req -sha256 -days 365 -in "${base}.csr" \
    -CA "${ca}.crt" -CAkey "${ca}.key" -CAcreateserial \
    -extfile "${base}.ext" -out "${base}.crt" 2>/dev/null
  rm -f -- "${base}.csr" "${base}.ext"
}

make_pki() {
  local p="${CLUSTER_DIR}/pki"
  mkdir -p "${p}"
  (
    cd "${p}"
    umask 077
    gen_ca ca "agentgov-e2e-ca"
    gen_ca webhook-client-ca "agentgov-e2e-webhook-client-ca"
    gen_ca front-proxy-ca "agentgov-e2e-front-proxy-ca"
    gen_cert apiserver ca "/CN=kube-apiserver" serverAuth \
      "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1"
    gen_cert admin ca "/O=system:masters/CN=agentgov-admin" clientAuth
    # system:masters because --use-service-account-credentials=false makes every
    # controller act as this user, and the system:kube-controller-manager role
    # alone cannot e.g. create ReplicaSets/Pods.
    gen_cert kube-controller-manager ca "/O=system:masters/CN=system:kube-controller-manager" clientAuth
    gen_cert kube-scheduler ca "/CN=system:kube-scheduler" clientAuth
    # The API server's client certificate towards kubelets (logs, exec, port-forward).
    gen_cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    gen_cert webhook-client webhook-client-ca "/CN=agentgov-apiserver-webhook-client" clientAuth
    # Convenience serving cert for a webhook on loopback (caBundle: ca.crt).
    gen_cert webhook-serving ca "/CN=agentgov-webhook" serverAuth \
      "DNS:localhost,IP:127.0.0.1"
    # Aggregation layer (request-header authentication), as in kubeadm clusters.
    gen_cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" clientAuth
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f -- ./*.srl
  )
}

write_kubeconfig() { # write_kubeconfig FILE USER CERT KEY
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: agentgov-e2e
  cluster:
    server: https://127.0.0.1:${APISERVER_PORT}
    certificate-authority-data: $(b64 "${CLUSTER_DIR}/pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$3")
    client-key-data: $(b64 "$4")
contexts:
- name: agentgov-e2e
  context:
    cluster: agentgov-e2e
    user: $2
    namespace: default
current-context: agentgov-e2e
EOF
  chmod 600 "$1"
}

write_admission_config() {
  local p="${CLUSTER_DIR}/pki" c="${CLUSTER_DIR}/config"
  # Users are matched by the webhook's host:port; "*" is the fallback.
  cat > "${c}/webhook-client.kubeconfig" <<EOF
apiVersion: v1
kind: Config
users:
- name: "${WEBHOOK_HOSTPORT}"
  user:
    client-certificate: ${p}/webhook-client.crt
    client-key: ${p}/webhook-client.key
- name: "*"
  user:
    client-certificate: ${p}/webhook-client.crt
    client-key: ${p}/webhook-client.key
EOF
  cat > "${c}/admission.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: ${c}/webhook-client.kubeconfig
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: ${c}/webhook-client.kubeconfig
EOF
}

write_env() {
  local p="${CLUSTER_DIR}/pki" name var
  {
    echo "# Generated by e2e/controlplane/cluster.sh up; source this file."
    printf 'export %s=%q\n' \
      AGENTGOV_CLUSTER_DIR "${CLUSTER_DIR}" \
      KUBECONFIG "${CLUSTER_DIR}/kubeconfig" \
      AGENTGOV_KUBECONFIG "${CLUSTER_DIR}/kubeconfig" \
      AGENTGOV_APISERVER_URL "https://127.0.0.1:${APISERVER_PORT}" \
      AGENTGOV_APISERVER_PORT "${APISERVER_PORT}" \
      AGENTGOV_ETCD_PORT "${ETCD_PORT}" \
      AGENTGOV_KCM_PORT "${KCM_PORT}" \
      AGENTGOV_SCHEDULER_PORT "${SCHEDULER_PORT}" \
      AGENTGOV_SERVICE_CIDR "${SERVICE_CIDR}" \
      AGENTGOV_CA_CRT "${p}/ca.crt" \
      AGENTGOV_WEBHOOK_HOSTPORT "${WEBHOOK_HOSTPORT}" \
      AGENTGOV_WEBHOOK_CLIENT_CA "${p}/webhook-client-ca.crt" \
      AGENTGOV_WEBHOOK_CLIENT_CERT "${p}/webhook-client.crt" \
      AGENTGOV_WEBHOOK_CLIENT_KEY "${p}/webhook-client.key" \
      AGENTGOV_WEBHOOK_SERVING_CERT "${p}/webhook-serving.crt" \
      AGENTGOV_WEBHOOK_SERVING_KEY "${p}/webhook-serving.key" \
      AGENTGOV_CONTROLPLANE_BIN "${BIN_DIR}"
    for name in "${PROCS[@]}"; do
      var="$(tr 'a-z-' 'A-Z_' <<<"${name}")"
      var="${var/KUBE_CONTROLLER_MANAGER/KCM}"; var="${var/KUBE_APISERVER/APISERVER}"; var="${var/KUBE_SCHEDULER/SCHEDULER}"
      printf 'export AGENTGOV_%s_PID=%q\n' "${var}" "$(recorded_pid "${name}")"
    done
    # shellcheck disable=SC2016 # $PATH is expanded when the file is sourced
    printf 'export PATH=%q:"${PATH}"\n' "${BIN_DIR}"
  } > "${CLUSTER_DIR}/env"
}

# ---------------------------------------------------------------- commands ---

resolve_bin_dir() {
  if [[ -n "${AGENTGOV_CONTROLPLANE_BIN:-}" ]]; then
    BIN_DIR="$(abspath "${AGENTGOV_CONTROLPLANE_BIN}")"
  else
    bash "${SCRIPT_DIR}/build.sh" || die "building the control-plane binaries failed (see above)"
    BIN_DIR="$(bash "${SCRIPT_DIR}/build.sh" --print-bin-dir)"
  fi
  local b
  local -a need=(etcd kube-apiserver kube-controller-manager kubectl)
  [[ "${AGENTGOV_SCHEDULER:-1}" == 0 ]] || need+=(kube-scheduler)
  for b in "${need[@]}"; do
    [[ -x "${BIN_DIR}/${b}" ]] || die "missing binary ${BIN_DIR}/${b}"
  done
}

any_running() {
  local name
  for name in "${PROCS[@]}"; do
    is_ours_alive "$(recorded_pid "${name}")" && return 0
  done
  return 1
}

prepare_dir() {
  if [[ -d "${CLUSTER_DIR}" ]]; then
    if [[ -f "${CLUSTER_DIR}/${MARKER}" ]]; then
      any_running && die "a cluster is already running in ${CLUSTER_DIR} (run: $0 down)"
      rm -rf -- "${CLUSTER_DIR:?}"
    elif [[ -n "$(ls -A -- "${CLUSTER_DIR}")" ]]; then
      die "${CLUSTER_DIR} exists, is not empty and is not a cluster state dir; refusing to use it"
    fi
  fi
  mkdir -p "${CLUSTER_DIR}"/{pids,logs,config}
  mkdir -m 700 "${CLUSTER_DIR}/etcd" # etcd warns about anything wider
  : > "${CLUSTER_DIR}/${MARKER}"
}

cmd_up() {
  local t_start=${SECONDS}
  command -v openssl >/dev/null 2>&1 || die "openssl is required"
  resolve_bin_dir
  prepare_dir
  # From here on, a failure must not leave processes behind.
  UP_IN_PROGRESS=1
  trap 'rc=$?; if [[ -n "${UP_IN_PROGRESS:-}" ]]; then log "up failed; stopping what was started"; stop_all; fi; exit "${rc}"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  WEBHOOK_HOSTPORT="${AGENTGOV_WEBHOOK_HOSTPORT:-127.0.0.1:18443}"
  local ports
  read -r -a ports <<<"$(free_ports 5)"
  ETCD_PORT="${AGENTGOV_ETCD_PORT:-${ports[0]}}"
  ETCD_PEER_PORT="${ports[1]}"
  APISERVER_PORT="${AGENTGOV_APISERVER_PORT:-${ports[2]}}"
  KCM_PORT="${ports[3]}"
  SCHEDULER_PORT="${ports[4]}"

  local t0=${SECONDS}
  make_pki
  log "PKI created in $(( SECONDS - t0 ))s (${CLUSTER_DIR}/pki)"
  local p="${CLUSTER_DIR}/pki" c="${CLUSTER_DIR}/config"
  write_kubeconfig "${CLUSTER_DIR}/kubeconfig" agentgov-admin "${p}/admin.crt" "${p}/admin.key"
  write_kubeconfig "${c}/kube-controller-manager.kubeconfig" system:kube-controller-manager \
    "${p}/kube-controller-manager.crt" "${p}/kube-controller-manager.key"
  write_kubeconfig "${c}/kube-scheduler.kubeconfig" system:kube-scheduler \
    "${p}/kube-scheduler.crt" "${p}/kube-scheduler.key"
  write_admission_config

  local kubectl=("${BIN_DIR}/kubectl" --kubeconfig "${CLUSTER_DIR}/kubeconfig" --request-timeout=5s)

  start_proc etcd "${BIN_DIR}/etcd" \
    --name=agentgov-e2e \
    --data-dir="${CLUSTER_DIR}/etcd" \
    --listen-client-urls="http://127.0.0.1:${ETCD_PORT}" \
    --advertise-client-urls="http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster="agentgov-e2e=http://127.0.0.1:${ETCD_PEER_PORT}" \
    --unsafe-no-fsync=true
  if command -v curl >/dev/null 2>&1; then
    wait_until etcd "etcd /health" curl -fsS --max-time 2 "http://127.0.0.1:${ETCD_PORT}/health"
  fi

  local -a apiserver_flags=()
  read -r -a apiserver_flags <<<"${AGENTGOV_APISERVER_FLAGS:-}"
  start_proc kube-apiserver "${BIN_DIR}/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:${ETCD_PORT}" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="${APISERVER_PORT}" \
    --cert-dir="${CLUSTER_DIR}/kube-apiserver-certs" \
    --tls-cert-file="${p}/apiserver.crt" \
    --tls-private-key-file="${p}/apiserver.key" \
    --client-ca-file="${p}/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="${p}/sa.pub" \
    --service-account-signing-key-file="${p}/sa.key" \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --kubelet-client-certificate="${p}/apiserver-kubelet-client.crt" \
    --kubelet-client-key="${p}/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --authorization-mode=Node,RBAC \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --admission-control-config-file="${c}/admission.yaml" \
    --requestheader-client-ca-file="${p}/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="${p}/front-proxy-client.crt" \
    --proxy-client-key-file="${p}/front-proxy-client.key" \
    --v=1 "${apiserver_flags[@]}"
  wait_until kube-apiserver "kube-apiserver /readyz" "${kubectl[@]}" get --raw=/readyz

  start_proc kube-controller-manager "${BIN_DIR}/kube-controller-manager" \
    --kubeconfig="${c}/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="${c}/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="${c}/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="${KCM_PORT}" \
    --cert-dir="${CLUSTER_DIR}/kube-controller-manager-certs" \
    --controllers="${AGENTGOV_KCM_CONTROLLERS:-${KCM_CONTROLLERS}}" \
    --service-account-private-key-file="${p}/sa.key" \
    --root-ca-file="${p}/ca.crt" \
    --use-service-account-credentials=false \
    --leader-elect=false \
    --v=1
  wait_until kube-controller-manager "ServiceAccount default/default" \
    "${kubectl[@]}" get serviceaccount default --namespace default

  if [[ "${AGENTGOV_SCHEDULER:-1}" != 0 ]]; then
    start_proc kube-scheduler "${BIN_DIR}/kube-scheduler" \
      --kubeconfig="${c}/kube-scheduler.kubeconfig" \
      --authentication-kubeconfig="${c}/kube-scheduler.kubeconfig" \
      --authorization-kubeconfig="${c}/kube-scheduler.kubeconfig" \
      --bind-address=127.0.0.1 \
      --secure-port="${SCHEDULER_PORT}" \
      --cert-dir="${CLUSTER_DIR}/kube-scheduler-certs" \
      --leader-elect=false \
      --v=1
    if command -v curl >/dev/null 2>&1; then
      wait_until kube-scheduler "kube-scheduler /readyz" \
        curl -fsSk --max-time 2 "https://127.0.0.1:${SCHEDULER_PORT}/readyz"
    fi
  fi

  write_env
  UP_IN_PROGRESS=""
  trap - EXIT INT TERM
  log "control plane ready in $(( SECONDS - t_start ))s: https://127.0.0.1:${APISERVER_PORT} (etcd :${ETCD_PORT}, kube-controller-manager :${KCM_PORT})"
  log "use it with: source ${CLUSTER_DIR}/env"
  printf '%s\n' "${CLUSTER_DIR}"
}

cmd_down() {
  [[ -f "${CLUSTER_DIR}/${MARKER}" ]] || { log "no cluster state in ${CLUSTER_DIR}; nothing to stop"; return 0; }
  stop_all
  rm -f -- "${CLUSTER_DIR}"/pids/*.pid "${CLUSTER_DIR}/env"
  rm -rf -- "${CLUSTER_DIR:?}/etcd" # data is useless after down; up always starts fresh
  log "stopped; logs in ${CLUSTER_DIR}/logs"
}

cmd_status() {
  local name pid rc=1
  for name in "${PROCS[@]}"; do
    pid="$(recorded_pid "${name}")"
    if is_ours_alive "${pid}"; then echo "${name}: running (pid ${pid})"; rc=0
    else echo "${name}: not running"; fi
  done
  [[ -f "${CLUSTER_DIR}/env" ]] && echo "env: ${CLUSTER_DIR}/env"
  return "${rc}"
}

CMD_PID=""
exec_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "${CMD_PID}" ]] && kill -0 "${CMD_PID}" 2>/dev/null; then
    kill -TERM "${CMD_PID}" 2>/dev/null || true
    wait "${CMD_PID}" 2>/dev/null || true
  fi
  cmd_down || true
  if (( rc == 0 )) && [[ -z "${AGENTGOV_KEEP_CLUSTER_DIR:-}" ]] && [[ -f "${CLUSTER_DIR}/${MARKER}" ]]; then
    rm -rf -- "${CLUSTER_DIR:?}"
    log "removed ${CLUSTER_DIR} (set AGENTGOV_KEEP_CLUSTER_DIR=1 to keep it)"
  fi
  exit "${rc}"
}

cmd_exec() {
  [[ "${1:-}" == "--" ]] && shift
  (( $# > 0 )) || die "usage: $0 exec -- CMD [ARGS...]"
  trap exec_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  cmd_up >/dev/null
  trap exec_cleanup EXIT # cmd_up resets the traps on success
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # shellcheck disable=SC1091
  source "${CLUSTER_DIR}/env"
  local rc=0 out="${CLUSTER_DIR}/logs/command.log"
  # Background + wait so INT/TERM are handled promptly; keep stdin attached.
  start_command "${out}" "$@"
  wait "${CMD_PID}" || rc=$?
  CMD_PID=""
  if (( rc != 0 )); then
    log "command failed with exit ${rc}: $*"
    log "control-plane logs: ${CLUSTER_DIR}/logs"
    if [[ -n "${CI:-}" ]]; then
      local name
      for name in "${PROCS[@]}"; do tail_log "${name}" 60; done
      print_failures "${out}"
      log "command failed with exit ${rc}: $*"
    fi
  fi
  exit "${rc}"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "${cmd}" in
    up|down|status)
      CLUSTER_DIR="$(abspath "${AGENTGOV_CLUSTER_DIR:-${REPO_ROOT}/.cache/cluster/default}")"
      "cmd_${cmd}" "$@" ;;
    exec)
      CLUSTER_DIR="$(abspath "${AGENTGOV_CLUSTER_DIR:-${REPO_ROOT}/.cache/cluster/exec-$(date +%Y%m%d-%H%M%S)-$$}")"
      cmd_exec "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
