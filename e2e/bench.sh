#!/usr/bin/env bash
# `make bench`: benchmarks, written to BENCHMARKS.md. Timings live here, never in tests.
#   - policy evaluations per second (the Rego step alone)
#   - revalidation of N governed agents after a policy change on the real control plane
#     (AGENTGOV_BENCH_AGENTS, default "1000 10000")
#   - the webhook's admission throughput and latency over mTLS (webhook/benches/load.rs), the
#     memory of its cache with 10,000 agents in process, and the resident memory of the release
#     webhook binary watching the real control plane with N signed agents
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO}"
OUT="${REPO}/BENCHMARKS.md"
SIZES="${AGENTGOV_BENCH_AGENTS:-1000 10000}"

cargo build --release --locked -q -p agentgov-operator -p agentgov-webhook -p agentgov-e2e --bins
cargo build --release --locked -q -p agentgov-api --example policy_throughput
policy=$("${REPO}/target/release/examples/policy_throughput" 200000)
echo "${policy}"

echo "webhook load benchmark" >&2
webhook=$(cargo bench --locked -q -p agentgov-webhook --bench load 2>/dev/null)
webhook_rss=$(cargo bench --locked -q -p agentgov-webhook --bench load -- --rss 10000 2>/dev/null)

rows=""
webhook_rows=""
for n in ${SIZES}; do
  echo "revalidation benchmark: ${n} agents" >&2
  out=$(AGENTGOV_OPERATOR_BIN="${REPO}/target/release/agentgov-operator" \
    AGENTGOV_WEBHOOK_BIN="${REPO}/target/release/agentgov-webhook" \
    bash e2e/controlplane/cluster.sh exec -- "${REPO}/target/release/revalidation-bench" "${n}")
  echo "${out}"
  row=$(printf '%s\n' "${out}" | sed -n 's/^revalidation| /| /p')
  webhook_row=$(printf '%s\n' "${out}" | sed -n 's/^webhook| /| /p')
  if [[ -z "${row}" || -z "${webhook_row}" ]]; then
    echo "revalidation-bench ${n} printed no result rows" >&2
    exit 1
  fi
  rows+="${row}"$'\n'
  webhook_rows+="${webhook_row}"$'\n'
done

{
  echo "# Benchmarks"
  echo
  echo "Made by \`make bench\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(uname -m))."
  echo
  echo "## Policy evaluation (the Rego step alone)"
  echo
  echo "\`target/release/examples/policy_throughput 200000\`: ${policy}"
  echo
  echo "## Revalidation after a policy change (real kube-apiserver + etcd on loopback)"
  echo
  echo "\`AGENTGOV_BENCH_AGENTS=N make bench\` (revalidation-bench): N governed agents are promoted, then"
  echo "the PolicyBundle changes and every agent must be re-signed against the new policy hash."
  echo "Converged = from the bundle change until the operator's revalidation summary counts all N"
  echo "and a list confirms every proof names the new hash. Default flags (status writes limited"
  echo "to 500/s, 16 in flight). Peak RSS is the operator's VmHWM."
  echo
  echo "| agents | initial promotion | converged after policy change | agents/s | operator peak RSS |"
  echo "|---|---|---|---|---|"
  printf '%s' "${rows}"
  echo
  echo "## Admission webhook (mTLS, keep-alive, loopback)"
  echo
  echo "\`cargo bench -p agentgov-webhook --bench load\` (scenarios and method: webhook/BENCHMARKS-webhook.md):"
  echo
  printf '%s\n' "${webhook}"
  echo
  echo "\`cargo bench -p agentgov-webhook --bench load -- --rss 10000\`:"
  echo
  printf '%s\n' "${webhook_rss}"
  echo
  echo "### The webhook binary on the real control plane"
  echo
  echo "After the revalidation above, the release \`agentgov-webhook\` is started on the same"
  echo "namespace (JSON logs to a file, key ring and certificates from files, as deployed). Ready ="
  echo "from start until \`/readyz\` says its Agent and PolicyBundle caches have synced. Then one Pod"
  echo "review per agent is sent to it over mTLS as the API server would (8 in flight), so that"
  echo "every agent's memo entry is filled; each must be allowed. VmRSS/VmHWM from /proc."
  echo
  echo "| agents | ready | RSS synced | RSS after reviewing each agent's Pod | peak RSS | reviews/s (one client, 8 in flight) |"
  echo "|---|---|---|---|---|---|"
  printf '%s' "${webhook_rows}"
} > "${OUT}"
echo "wrote ${OUT}"
