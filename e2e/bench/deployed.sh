#!/usr/bin/env bash
# The cost a deployment pays for agentgov's webhook: the release binary run as deployed and
# measured from outside. Prints a Markdown section on stdout (progress on stderr).
#
#   bash e2e/bench/deployed.sh
#
# What it does, on a throwaway loopback control plane (e2e/controlplane/cluster.sh exec):
#   1. builds the release webhook, operator and admission-load;
#   2. `admission-load setup`: a namespace with the default PolicyBundle and the governed agent
#      invoice-auditor, signed by the release operator (stopped once the proof is written);
#   3. starts the release agentgov-webhook as a Deployment's container runs it: all namespaces,
#      the cluster's serving certificate (RSA 2048) and client CA (mTLS), JSON decision log on
#      stdout into a pipe that another process (cat) drains into a file;
#   4. loads /validate/pods with the Pod AdmissionReview the API server sent for a Deployment's
#      Pod (e2e/bench/fixtures/pod-review-deployment.json, rewritten to the run's namespace),
#      over HTTP/1.1 and HTTP/2 (what the API server speaks: HTTP/1.1 behind a Service, HTTP/2
#      by URL), and reports the webhook process's
#      CPU time per review (utime + stime from /proc/<pid>/stat over the measured window), the
#      median of several rounds (the webhooks and shapes alternating within each round);
#   5. checks that every decision reached the log (log lines = the decision counters);
#   6. measures Pod creates through the API server at concurrency 1 and 16 into a namespace the
#      webhook's registration selects, into one an allow-all webhook's registration selects and
#      into one neither does, create by create in turn; stored, then as dry runs.
#
# Environment (optional):
#   AGENTGOV_WEBHOOK_BIN           the webhook binary to measure (default target/release)
#   AGENTGOV_BASELINE_WEBHOOK_BIN  a second webhook binary (say, an older build) started beside
#                                  the release one and loaded row for row with it (same run)
#   AGENTGOV_DEPLOYED_SECONDS      measured seconds per load row (default 5)
#   AGENTGOV_DEPLOYED_ROUNDS       load rounds (default 3)
#   AGENTGOV_DEPLOYED_CREATES      Pod creates per latency row and round (default 1000: over 4
#                                  rounds a side's p99 is its 40th slowest create; with 300, its
#                                  12th, and the added p99 moved by several ms from round to round)
#   AGENTGOV_DEPLOYED_CREATE_ROUNDS  latency rounds (default 4)
#   AGENTGOV_DEPLOYED_NO_BUILD=1   use the binaries already in target/release
#   AGENTGOV_DEPLOYED_PROFILE=1    after the load rounds, load the release webhook once more per
#                                  shape with `perf record --call-graph dwarf` attached, print where
#                                  a review's CPU goes (e2e/bench/profile.py; needs perf, as root
#                                  or with perf_event_paranoid <= 1), and stop before the Pod creates
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${REPO}"
FIXTURE="${REPO}/e2e/bench/fixtures/pod-review-deployment.json"
REL="${CARGO_TARGET_DIR:-${REPO}/target}/release"

log() { printf '[deployed] %s\n' "$*" >&2; }

if [[ "${1:-}" != "--inside" ]]; then
  if [[ -z "${AGENTGOV_DEPLOYED_NO_BUILD:-}" ]]; then
    log "building release binaries"
    cargo build --release --locked -q -p agentgov-webhook -p agentgov-operator --bins
    cargo build --release --locked -q -p agentgov-e2e --bin admission-load
  fi
  AGENTGOV_OPERATOR_BIN="${AGENTGOV_OPERATOR_BIN:-${REL}/agentgov-operator}" \
    exec bash e2e/controlplane/cluster.sh exec -- bash "${BASH_SOURCE[0]}" --inside
fi

# ---- inside the control plane's environment ------------------------------------------------
LOAD="${AGENTGOV_LOAD_BIN:-${REL}/admission-load}"
SECONDS_PER_ROW="${AGENTGOV_DEPLOYED_SECONDS:-5}"
ROUNDS="${AGENTGOV_DEPLOYED_ROUNDS:-3}"
CREATES="${AGENTGOV_DEPLOYED_CREATES:-1000}"
CREATE_ROUNDS="${AGENTGOV_DEPLOYED_CREATE_ROUNDS:-4}"
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/agentgov-deployed.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "${pid}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "${RUN_DIR}"
}
trap cleanup EXIT

free_port() { # a loopback port nothing listens on, below the ephemeral range
  local port _
  for _ in $(seq 200); do
    port=$((10000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
      echo "${port}"
      return 0
    fi
  done
  return 1
}

log "setting up a signed governed agent"
setup="$("${LOAD}" setup --dir "${RUN_DIR}" --fixture "${FIXTURE}")"
eval "${setup}"
BODY="${RUN_DIR}/pod-review.json"

# start_webhook NAME BINARY: as a Deployment's container runs it, stdout and stderr into a pipe
# drained by another process. Sets ${NAME}_PID, ${NAME}_PORT, ${NAME}_METRICS, ${NAME}_LOG.
start_webhook() {
  local name=$1 bin=$2 port metrics logfile pid
  port=$(free_port)
  metrics=$(free_port)
  logfile="${RUN_DIR}/${name}.log"
  AGENTGOV_SHUTDOWN_GRACE=0s AGENTGOV_SHUTDOWN_DELAY=0s RUST_LOG=info \
    "${bin}" --listen "127.0.0.1:${port}" --metrics-listen "127.0.0.1:${metrics}" \
    --tls-cert-file "${AGENTGOV_WEBHOOK_SERVING_CERT}" --tls-key-file "${AGENTGOV_WEBHOOK_SERVING_KEY}" \
    --client-ca-file "${AGENTGOV_WEBHOOK_CLIENT_CA}" --keyring-file "${RUN_DIR}/keyring.json" \
    --log-format json > >(cat > "${logfile}") 2>&1 &
  pid=$!
  PIDS+=("${pid}")
  local i
  for i in $(seq 600); do
    if curl -fsS "http://127.0.0.1:${metrics}/readyz" >/dev/null 2>&1; then
      break
    fi
    if ! kill -0 "${pid}" 2>/dev/null || (( i == 600 )); then
      log "webhook ${name} did not become ready; its log:"
      cat "${logfile}" >&2
      exit 1
    fi
    sleep 0.1
  done
  printf -v "${name}_PID" '%s' "${pid}"
  printf -v "${name}_PORT" '%s' "${port}"
  printf -v "${name}_METRICS" '%s' "${metrics}"
  printf -v "${name}_LOG" '%s' "${logfile}"
  log "webhook ${name} (${bin}) ready: pid ${pid}, https://127.0.0.1:${port}"
}

WEBHOOKS=(release)
start_webhook release "${AGENTGOV_WEBHOOK_BIN:-${REL}/agentgov-webhook}"
if [[ -n "${AGENTGOV_BASELINE_WEBHOOK_BIN:-}" ]]; then
  WEBHOOKS+=(baseline)
  start_webhook baseline "${AGENTGOV_BASELINE_WEBHOOK_BIN}"
fi

# load NAME HTTP CONNECTIONS IN_FLIGHT: one JSON line (admission-load --format json)
load() {
  local name=$1 http=$2 connections=$3 in_flight=$4 pid port
  pid="${name}_PID"; port="${name}_PORT"
  "${LOAD}" load --url "https://127.0.0.1:${!port}/validate/pods?timeout=5s" --body "${BODY}" \
    --ca "${AGENTGOV_CA_CRT}" --cert "${AGENTGOV_WEBHOOK_CLIENT_CERT}" --key "${AGENTGOV_WEBHOOK_CLIENT_KEY}" \
    --http "${http}" --connections "${connections}" --in-flight "${in_flight}" \
    --duration "${SECONDS_PER_ROW}" --warmup 1 --expect allowed --pid "${!pid}" \
    --label "${name}" --format json
}

log "loading /validate/pods (${ROUNDS} rounds)"
RESULTS="${RUN_DIR}/load.jsonl"
: >"${RESULTS}"
load_failed=0
# (HTTP, connections, in flight): the API server speaks HTTP/2 over one connection per webhook
# it reaches by URL, with as many streams as requests in flight, and HTTP/1.1 with a connection
# per review in flight to one behind a Service (k8s.io/apiserver pkg/util/webhook/client.go).
SHAPES=("1.1 1 1" "1.1 8 1" "2 1 1" "2 1 8")
for round in $(seq "${ROUNDS}"); do
  for shape in "${SHAPES[@]}"; do
    read -r http connections in_flight <<<"${shape}"
    for name in "${WEBHOOKS[@]}"; do
      if ! load "${name}" "${http}" "${connections}" "${in_flight}" >>"${RESULTS}"; then
        load_failed=1
        log "round ${round}: errors loading ${name} (HTTP ${http}, ${connections} connections, ${in_flight} in flight)"
      fi
    done
  done
done

# The table: per webhook and shape, the round with the median CPU per review, and the lowest
# and highest CPU per review of all rounds; then the release binary against the baseline.
rows="$(python3 - "${RESULTS}" <<'PY'
import json, sys
from collections import OrderedDict
runs = OrderedDict()
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line)
        runs.setdefault((r["http"], r["connections"], r["in_flight"]), OrderedDict()).setdefault(r["target"], []).append(r)
def f(v, d=1):
    return "-" if v is None else f"{v:.{d}f}"
def median_run(rs):
    rs = sorted(rs, key=lambda r: r.get("target_cpu_us_per_review") or 0.0)
    return rs[(len(rs) - 1) // 2]
print("| webhook | HTTP | connections | in flight each | requests/s | p50 ms | p99 ms | errors | CPU µs/review | lowest–highest | context switches/review |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (http, c, k), targets in runs.items():
    for target, rs in targets.items():
        m = median_run(rs)
        cpus = [r["target_cpu_us_per_review"] for r in rs if r.get("target_cpu_us_per_review") is not None]
        spread = f"{min(cpus):.1f}–{max(cpus):.1f}" if cpus else "-"
        print(f"| {target} | {http} | {c} | {k} | {m['requests_per_second']:.0f} | {f(m['p50_ms'], 3)} | {f(m['p99_ms'], 3)} | {sum(r['errors'] for r in rs)} | **{f(m['target_cpu_us_per_review'])}** | {spread} | {f(m['target_switches_per_review'])} |")
if any("baseline" in targets and "release" in targets for targets in runs.values()):
    print()
    print("| HTTP | connections | in flight each | baseline CPU µs/review | release CPU µs/review | change |")
    print("|---|---|---|---|---|---|")
    for (http, c, k), targets in runs.items():
        if "baseline" in targets and "release" in targets:
            b = median_run(targets["baseline"]).get("target_cpu_us_per_review")
            n = median_run(targets["release"]).get("target_cpu_us_per_review")
            change = f"{(n - b) / b * 100:+.0f}%" if b and n is not None else "-"
            print(f"| {http} | {c} | {k} | {f(b)} | {f(n)} | {change} |")
PY
)"

# Idle cost, for reading the rows: the webhook's CPU over 5 s without load (watches, reloads).
idle_cpu() {
  local pid=$1 a b
  a=$(awk '{print $14 + $15}' "/proc/${pid}/stat")
  sleep 5
  b=$(awk '{print $14 + $15}' "/proc/${pid}/stat")
  echo "$(( (b - a) * 1000 / $(getconf CLK_TCK) / 5 ))"
}
idle="$(idle_cpu "${release_PID}")"

# Where a review's CPU goes: each shape loaded once more with perf sampling the release webhook
# (call graphs unwound from the stack, so shares are inclusive), shares turned into µs with the
# unprofiled median CPU per review (perf's own cost is charged to the process it samples).
if [[ -n "${AGENTGOV_DEPLOYED_PROFILE:-}" ]]; then
  command -v perf >/dev/null || { log "perf not found (apt-get install linux-perf)"; exit 1; }
  echo "${rows}"
  echo
  echo "#### Where a review's CPU goes (perf, release webhook)"
  echo
  for shape in "${SHAPES[@]}"; do
    read -r http connections in_flight <<<"${shape}"
    data="${RUN_DIR}/perf-${http}-${connections}-${in_flight}.data"
    (sleep 1.5; perf record -q --call-graph dwarf,32768 -F 1000 -o "${data}" -p "${release_PID}" -- sleep 3) \
      >/dev/null 2>&1 &
    profiled="$(load release "${http}" "${connections}" "${in_flight}")" || { log "profiled load failed"; exit 1; }
    wait $!
    [[ -s "${data}" ]] || { log "perf recorded nothing (perf_event_paranoid? run as root)"; exit 1; }
    perf report -i "${data}" --children --sort sym -g none --stdio --percent-limit 0 2>/dev/null |
      python3 e2e/bench/profile.py --results "${RESULTS}" --shape "${http} ${connections} ${in_flight}" \
        --profiled "${profiled}"
    echo
  done
  exit 0
fi

# Every decision reached the log: decision lines = the decision counters.
decisions_counted() {
  curl -fsS "http://127.0.0.1:$1/metrics" |
    awk '/^agent_starts_(allowed|denied)_total/ {sum += $NF} END {printf "%d\n", sum}'
}
counted="$(decisions_counted "${release_METRICS}")"

log "Pod creates through the API server"
creates="$("${LOAD}" pods --namespace "${NAMESPACE}" --agent "${AGENT}" --fixture "${FIXTURE}" \
  --webhook-url "https://127.0.0.1:${release_PORT}" --concurrency 1,16 --creates "${CREATES}" \
  --rounds "${CREATE_ROUNDS}")"

# Stop the webhooks (SIGTERM: a graceful stop flushes the log) and count the lines.
counted_after="$(decisions_counted "${release_METRICS}")"
for name in "${WEBHOOKS[@]}"; do
  pid="${name}_PID"
  kill -TERM "${!pid}" 2>/dev/null || true
done
for name in "${WEBHOOKS[@]}"; do
  pid="${name}_PID"
  for _ in $(seq 300); do kill -0 "${!pid}" 2>/dev/null || break; sleep 0.1; done
done
sleep 0.5 # the draining cat writes the last lines
lines="$(grep -c '"message":"admission decision"' "${release_LOG}" || true)"

baseline_note=""
if [[ -n "${AGENTGOV_BASELINE_WEBHOOK_BIN:-}" ]]; then
  baseline_note=" *baseline* is ${AGENTGOV_BASELINE_WEBHOOK_BIN}, started beside the release binary the same way and loaded in turn with it, shape by shape."
fi
cat <<EOF
### The release webhook as deployed (real control plane, mTLS, decision log into a pipe)

\`bash e2e/bench/deployed.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores; webhook, load generator and
control plane share them). The webhook runs as its Deployment's container does: all namespaces,
the cluster's serving certificate (RSA 2048) and client CA (mTLS), JSON log lines on stdout into a
pipe that another process drains. The body is the Pod AdmissionReview the API server sent for a
Deployment's Pod ($(wc -c <"${BODY}") bytes, e2e/bench/fixtures/pod-review-deployment.json), for a
governed agent signed by the operator: every answer must be an allow. *CPU µs/review* is the
webhook process's CPU time (user + system, all threads, /proc/<pid>/stat) over the measured
${SECONDS_PER_ROW} s divided by the reviews answered in them: the round with the median of
${ROUNDS} rounds (all webhooks and shapes in turn each round), lowest and highest beside it. Its
idle CPU is ${idle} ms/s. \`admission-load\` (one thread) keeps each connection busy: *in flight
each* is HTTP/2 streams per connection.${baseline_note}

${rows}

Decision log: ${lines} \`admission decision\` lines for ${counted_after} counted decisions
(${counted} before the Pod creates).

#### Latency the webhook adds to Pod creates (through the API server)

\`admission-load pods\`: Pod creates (the fixture's Pod as a client submits it) at each concurrency,
${CREATES} per side, row and round, ${CREATE_ROUNDS} rounds, into three namespaces create by create in
turn (the order rotating): the agent's, which agentgov's registration selects; one that the same
registration (rules, selectors, match conditions) selects for an allow-all webhook in the load
generator's process, which reads the review's uid and answers allowed (what calling any webhook costs
the API server: encoding the review, TLS, the round trip, decoding the answer); and one no webhook
selects (the same Pod; no other admission webhook is registered). Interleaving puts every side under
the same moment's load: the API server, etcd and the webhooks share the cores, which makes the tail.
Each round creates the Pods twice over: stored (etcd writes each, the scheduler sees it), then as dry
runs (\`dryRun=All\`: admitted the same way, every webhook called, nothing stored), which keeps the
webhook's cost and drops storage's share of the tail. The added figures are differences of
quantiles: the added p99 comes with a 95 % bootstrap interval (each side resampled 1,000 times),
and a target is met only when the interval's upper end is within it.

${creates}
EOF
if (( lines != counted_after )); then
  log "decision lines (${lines}) differ from counted decisions (${counted_after})"
  exit 1
fi
if (( load_failed )); then
  log "some load rows had errors (see the table)"
  exit 1
fi
