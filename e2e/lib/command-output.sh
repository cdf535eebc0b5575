# shellcheck shell=bash
# Sourced by cluster.sh and node.sh: run the command an `exec` wraps, keeping its output in
# CI, and repeat its failures at the very end. CI shows only the end of what a job printed,
# which after a failure is otherwise the tails of the component logs, not the failed test.

# start_command OUT CMD...: starts CMD in the background (stdin kept) and sets CMD_PID. With
# CI set, stdout and stderr are also appended to OUT.
start_command() {
  local out="$1"; shift
  if [[ -n "${CI:-}" ]]; then
    "$@" <&0 > >(tee -a -- "${out}") 2> >(tee -a -- "${out}" >&2) &
  else
    "$@" <&0 &
  fi
  CMD_PID=$!
}

# print_failures OUT: for cargo test everything from its first "failures:" section on,
# otherwise the last 80 lines; only in CI (elsewhere the output is still on screen).
print_failures() {
  local file="$1" first
  [[ -n "${CI:-}" ]] || return 0
  sleep 0.2 # the tee processes may still be writing
  [[ -s "${file}" ]] || return 0
  printf -- "----- the command's failures (%s) -----\n" "${file}" >&2
  first="$(grep -n -m1 '^failures:$' -- "${file}" | cut -d: -f1 || true)"
  if [[ -n "${first}" ]]; then
    tail -n "+${first}" -- "${file}" | head -n 400 >&2
  else
    tail -n 80 -- "${file}" >&2
  fi
  printf -- "----- end of the command's failures -----\n" >&2
}
