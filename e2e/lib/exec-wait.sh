# shellcheck shell=bash
# await_exec PID DIR: wait (5 s at most) until the process PID, just started in the background
# as `setsid BINARY ARGS... &`, has exec'd the binary: until its command line names DIR/ (every
# process the scripts start names its state dir). Until then /proc/PID/cmdline is the forked
# shell's, and a liveness check that asks "is PID ours?" by its command line says no: on a
# loaded machine a start was then reported as "exited while waiting".
await_exec() {
  local pid=$1 dir=$2 i
  for ((i = 0; i < 100; i++)); do
    { tr '\0' '\n' < "/proc/${pid}/cmdline"; } 2>/dev/null | grep -qF -- "${dir}/" && return 0
    kill -0 "${pid}" 2>/dev/null || return 0
    sleep 0.05
  done
}
