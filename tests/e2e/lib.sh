# shellcheck shell=bash disable=SC2154
# Shared by the e2e scripts (sourced). The caller sets VIGIL, sock and tmp.

# Says what failed, with the end of the agent's log, and ends the test.
fail() {
  echo "FAIL: $*" >&2
  echo "--- agent log ---" >&2
  tail -n 30 "$tmp/agent.log" >&2 || true
  exit 1
}

# The CLI against the test's agent.
vigil() { "$VIGIL" --server "unix://$sock" "$@"; }

# Prints the pid of each /tmp/PREFIX-<pid>.* directory whose process is gone, with the
# directory: "pid dir" per line. Runs that crashed before their cleanup leave these.
stale_runs() {
  local prefix=$1 old pid
  for old in /tmp/"$prefix"-*; do
    [ -d "$old" ] || continue
    pid=${old#/tmp/"$prefix"-}
    pid=${pid%%.*}
    kill -0 "$pid" 2>/dev/null && continue
    echo "$pid $old"
  done
}
