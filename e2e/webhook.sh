# shellcheck shell=bash
# The webhook for `make run` (sourced by e2e/run.sh; defines functions only, sets no options).
#
#   start_webhook RUN_DIR BIN   start ${BIN}/agentgov-webhook in the background on
#                               ${AGENTGOV_WEBHOOK_HOSTPORT:-127.0.0.1:18443} (HTTPS, mTLS with the
#                               cluster env's serving certificate and webhook client CA), key ring
#                               ${RUN_DIR}/keyring-public.json, metrics on
#                               ${AGENTGOV_WEBHOOK_METRICS_LISTEN:-127.0.0.1:18081}, log
#                               ${RUN_DIR}/logs/webhook.log; wait for /readyz; set WEBHOOK_PID.
#   register_webhook RUN_DIR    fill deploy/webhook/validating-webhook-configuration.yaml
#                               (${WEBHOOK_URL}=https://$AGENTGOV_WEBHOOK_HOSTPORT,
#                               ${CA_BUNDLE}=base64 of $AGENTGOV_CA_CRT), apply it, and wait until
#                               the API server sends agent Pods to the webhook.
#
# The registration is the ValidatingWebhookConfiguration named ${AGENTGOV_WEBHOOK_VWC_NAME}
# (agentgov-webhook, the template's name): delete that one on cleanup.
# Needs the cluster env (e2e/controlplane/cluster.sh's $DIR/env): KUBECONFIG, AGENTGOV_CA_CRT,
# AGENTGOV_WEBHOOK_CLIENT_CA, AGENTGOV_WEBHOOK_SERVING_CERT, AGENTGOV_WEBHOOK_SERVING_KEY.

AGENTGOV_WEBHOOK_VWC_NAME="agentgov-webhook"
WEBHOOK_PID=""

_webhook_repo() { (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); }
_webhook_log() { printf '[webhook] %s\n' "$*" >&2; }

_webhook_need_env() {
  local var missing=0
  for var in "$@"; do
    if [[ -z "${!var:-}" ]]; then
      _webhook_log "${var} is not set (source the cluster env: e2e/controlplane/cluster.sh up)"
      missing=1
    fi
  done
  return "${missing}"
}

# _webhook_http_ok HOST:PORT PATH: true when GET answers 200 (curl, else bash's /dev/tcp).
_webhook_http_ok() {
  local hostport=$1 path=$2
  if command -v curl >/dev/null; then
    curl -fsS -o /dev/null --max-time 2 "http://${hostport}${path}" 2>/dev/null
    return
  fi
  local status
  # shellcheck disable=SC2016 # the inner script expands its own $1/$2/$3
  status=$(timeout 2 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$3" >&3
    head -n1 <&3' _ "${hostport%:*}" "${hostport##*:}" "${path}" 2>/dev/null) || return 1
  [[ "${status}" == *" 200"* ]]
}

start_webhook() {
  local run_dir=$1 bin=$2
  _webhook_need_env AGENTGOV_WEBHOOK_SERVING_CERT AGENTGOV_WEBHOOK_SERVING_KEY \
    AGENTGOV_WEBHOOK_CLIENT_CA || return 1
  local listen="${AGENTGOV_WEBHOOK_HOSTPORT:-127.0.0.1:18443}"
  local metrics="${AGENTGOV_WEBHOOK_METRICS_LISTEN:-127.0.0.1:18081}"
  local ring="${run_dir}/keyring-public.json"
  local log_file="${run_dir}/logs/webhook.log"
  if [[ ! -s "${ring}" ]]; then
    _webhook_log "no verification key ring at ${ring} (keygen public)"
    return 1
  fi
  mkdir -p "${run_dir}/logs"
  _webhook_log "starting the webhook on https://${listen} (logs: ${log_file})"
  "${bin}/agentgov-webhook" \
    --listen "${listen}" \
    --metrics-listen "${metrics}" \
    --tls-cert-file "${AGENTGOV_WEBHOOK_SERVING_CERT}" \
    --tls-key-file "${AGENTGOV_WEBHOOK_SERVING_KEY}" \
    --client-ca-file "${AGENTGOV_WEBHOOK_CLIENT_CA}" \
    --keyring-file "${ring}" \
    >"${log_file}" 2>&1 &
  WEBHOOK_PID=$!
  local tries=0
  while (( tries++ < 120 )); do
    if ! kill -0 "${WEBHOOK_PID}" 2>/dev/null; then
      _webhook_log "the webhook exited before it was ready:"
      tail -n 20 "${log_file}" >&2
      wait "${WEBHOOK_PID}" 2>/dev/null || true
      WEBHOOK_PID=""
      return 1
    fi
    if _webhook_http_ok "${metrics}" /readyz; then
      _webhook_log "ready (metrics: http://${metrics}/metrics)"
      return 0
    fi
    sleep 0.25
  done
  _webhook_log "the webhook was not ready after 30s:"
  tail -n 20 "${log_file}" >&2
  return 1
}

register_webhook() {
  local run_dir=$1
  _webhook_need_env KUBECONFIG AGENTGOV_CA_CRT || return 1
  local repo template url ca doc
  repo="$(_webhook_repo)"
  template="${repo}/deploy/webhook/validating-webhook-configuration.yaml"
  url="https://${AGENTGOV_WEBHOOK_HOSTPORT:-127.0.0.1:18443}"
  ca="$(base64 -w0 "${AGENTGOV_CA_CRT}")" || return 1
  doc="$(<"${template}")"
  doc="${doc//"\${WEBHOOK_URL}"/"${url}"}"
  doc="${doc//"\${CA_BUNDLE}"/"${ca}"}"
  if [[ "${doc}" == *"\${"* ]]; then
    _webhook_log "${template} has a placeholder register_webhook does not fill"
    return 1
  fi
  mkdir -p "${run_dir}"
  printf '%s\n' "${doc}" >"${run_dir}/validating-webhook-configuration.yaml"
  kubectl apply --server-side --force-conflicts --field-manager=agentgov-run \
    -f "${run_dir}/validating-webhook-configuration.yaml" >/dev/null || return 1
  _webhook_log "registered ValidatingWebhookConfiguration ${AGENTGOV_WEBHOOK_VWC_NAME} -> ${url}"

  # The API server picks the registration up from its informer a moment later: wait until a
  # Pod of an agent that does not exist is refused by the webhook (a server-side dry run).
  local probe out tries=0
  probe='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"agentgov-registration-probe","namespace":"default","labels":{"agentgov.dev/agent":"agentgov-no-such-agent"}},"spec":{"containers":[{"name":"probe","image":"registry.invalid/probe:1"}]}}'
  while (( tries++ < 60 )); do
    out="$(kubectl create --dry-run=server -f - <<<"${probe}" 2>&1 || true)"
    if [[ "${out}" == *ADMISSION_DENY_AGENT_NOT_FOUND* ]]; then
      _webhook_log "the API server consults the webhook (agent pods are judged)"
      return 0
    fi
    sleep 0.5
  done
  _webhook_log "the registration did not take effect after 30s; last answer: ${out}"
  return 1
}
