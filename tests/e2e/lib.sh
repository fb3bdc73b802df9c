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

# Exits with ctest's skip code unless the test runs as root.
skip_unless_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root to load BPF programs"
    exit 77
  fi
}

# The cgroup v2 mount point, from mountinfo ("" when there is none).
cgroup2_root() {
  awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") print $5; break } }' \
    /proc/self/mountinfo | head -n 1
}

# Waits up to 20 s for the agent ($agent_pid) to answer `vigil status`, leaving its JSON in
# $tmp/status.json; fails if it exits or does not answer.
wait_for_agent() {
  for _ in $(seq 1 100); do
    vigil status -o json >"$tmp/status.json" 2>/dev/null && return 0
    kill -0 "$agent_pid" 2>/dev/null || fail "vigil-agent exited during start-up"
    sleep 0.2
  done
  fail "vigil-agent did not answer on $sock within 20 s"
}
