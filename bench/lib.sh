# Shell helpers shared by the benchmark scripts (sourced, not run). The sourcing script defines
# log() and sets SCRIPT_DIR and REPO_DIR.

# BUILD_DIR from the first argument: absolute, relative to the current directory when that
# exists (`bench/run.sh build` from the repository root), else relative to the repository.
resolve_build_dir() {
  local arg=${1:-build}
  case "$arg" in
    /*) BUILD_DIR=$arg ;;
    *) BUILD_DIR=$REPO_DIR/$arg ;;
  esac
  if [[ -d "$arg" ]]; then BUILD_DIR=$(cd "$arg" && pwd); fi
  return 0
}

# Sends $2 to pid $1, waits up to $3 seconds for it to exit, then SIGKILLs it.
stop_pid() {
  local pid=$1 sig=$2 timeout=$3 i
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill "-$sig" "$pid" 2>/dev/null
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid did not exit on SIG$sig within ${timeout}s, killing it"
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  return 0
}

# One benchmark at a time on this machine (two at once measure each other): an exclusive flock
# on fd 9, held until the script exits. The lock is taken on the /tmp directory itself, so no
# lock file is left behind.
bench_lock() {
  exec 9</tmp
  if ! flock -n 9; then
    log "another benchmark is running; waiting for it (at most 15 min)"
    flock -w 900 9 || die "gave up waiting for the other benchmark"
  fi
  export VIGIL_BENCH_LOCKED=1
}
