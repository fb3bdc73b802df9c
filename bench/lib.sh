# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts (sourced, not run). The sourcing script defines
# log() and sets SCRIPT_DIR and REPO_DIR.

# BUILD_DIR from the first argument: absolute, relative to the current directory when that
# exists (`bench/run.sh build` from the repository root), else relative to the repository.
# shellcheck disable=SC2034 # BUILD_DIR is the sourcing script's
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

# % of one core the whole machine used over the next second.
machine_busy_pct() {
  local a b
  a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
  echo $(((b - a) * 100 / $(getconf CLK_TCK)))
}

# Before a run, while nothing of the benchmark's own is busy: waits while the machine uses more
# than QUIET_PCT % of a core, for at most QUIET_MAX seconds per call and QUIET_BUDGET in all
# (QUIET_SPENT counts the seconds spent so far), then runs anyway. QUIET_MAX=0 turns it off.
# Sets WAITED (seconds) and BUSY_BEFORE (% of a core at the last check).
wait_machine_quiet() {
  WAITED=0
  BUSY_BEFORE=
  ((QUIET_MAX > 0)) || return 0
  while :; do
    BUSY_BEFORE=$(machine_busy_pct)
    ((BUSY_BEFORE <= QUIET_PCT)) && return 0
    if ((WAITED >= QUIET_MAX || QUIET_SPENT >= QUIET_BUDGET)); then
      log "other work uses ${BUSY_BEFORE}% of a core; running anyway"
      return 0
    fi
    ((WAITED == 0)) && log "other work uses ${BUSY_BEFORE}% of a core; waiting for it to pass (at most ${QUIET_MAX}s)"
    WAITED=$((WAITED + 1))
    QUIET_SPENT=$((QUIET_SPENT + 1))
  done
}

# The cgroup v2 mount point, from /proc/self/mountinfo (the first cgroup2 mount). Fails if none.
cgroup2_mount() {
  awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; found = 1; exit } break } }
       END { exit !found }' /proc/self/mountinfo
}

# Re-executes the calling script, once, in a private mount namespace (unshare --mount): a bpffs
# or network-namespace mount made after this exists only in that namespace and goes away with
# it, whatever happens to the script. Call it with the script's arguments, before any mount.
enter_private_mount_ns() {
  [[ "${VIGIL_BENCH_MOUNT_NS:-}" == "$0" ]] && return 0
  command -v unshare >/dev/null || die "unshare (util-linux) is required"
  export VIGIL_BENCH_MOUNT_NS=$0
  exec unshare --mount --propagation private -- "$BASH" "$0" "$@"
}

# The usual traps: the function named $1 on any exit; SIGINT and SIGTERM exit with 130 and 143
# (which runs it).
trap_exit() {
  # shellcheck disable=SC2064 # the function name is meant to expand now
  trap "$1" EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated"; exit 143' TERM
}

# Runs every configuration of "$2" once per round for $1 rounds, the order rotated by one every
# round, so that drift on a shared machine hits them all alike. For each: setup_<config>, which
# puts it in force or sets SETUP_ERROR and returns 1; then `$3 config round order`; then
# teardown_config. A configuration whose set-up fails before it ever ran is skipped for good
# (SKIP_REASON[config]); a later failure is noted (NOTES). The caller declares the associative
# arrays SKIP_REASON and RAN and the array NOTES.
run_rotated_rounds() { # rounds "config ..." run-function
  local rounds=$1 run=$3 round k n config
  local -a list
  read -ra list <<<"$2"
  n=${#list[@]}
  for ((round = 1; round <= rounds; round++)); do
    for ((k = 0; k < n; k++)); do
      config=${list[$(((k + round - 1) % n))]}
      [[ -z "${SKIP_REASON[$config]:-}" ]] || continue
      SETUP_ERROR=
      if ! "setup_$config"; then
        log "round $round: $config: $SETUP_ERROR"
        teardown_config
        if [[ -z "${RAN[$config]:-}" ]]; then
          SKIP_REASON["$config"]=$SETUP_ERROR
        else
          NOTES+=("Round $round: $config could not be set up: $SETUP_ERROR")
        fi
        continue
      fi
      RAN["$config"]=1
      log "round $round/$rounds: $config"
      "$run" "$config" "$round" "$k"
      teardown_config
    done
  done
}
