#!/usr/bin/env bash
# shellcheck disable=SC2317 # everything after the re-exec under unshare looks unreachable to it
# Memory-accounting benchmark: what does it cost to know every process's memory?
#
#   bench/run_mem.sh [BUILD_DIR]   (BUILD_DIR defaults to "build")
#
# Vigil reads memory as kernel state when asked: a BPF task iterator walks every task once per
# `vigil top` refresh, and nothing runs on a page fault. The usual BPF alternative hooks the
# RSS counters themselves (tracepoint kmem:rss_stat), which fire on every page fault. Two parts,
# writing bench/results/mem.{md,json}:
#   faults    bench/mem_faults.cpp (vigil_mem_faults): worker processes map anonymous memory,
#             write one byte per 4 KiB page and unmap it, for BENCH_MEM_SECONDS; pages touched
#             per second with 1 and 2 workers, in configurations alternated round by round (the
#             order rotated every round):
#               baseline   nothing attached (bare)
#               agent+top  vigil-agent, and `vigil top --interval 1s` refreshing during the runs
#                          (one iterator snapshot per second)
#               bpftrace   bpftrace keeping a per-process map on kmem:rss_stat
#               agent      (optional) vigil-agent alone, nobody asking for snapshots
#             Reported as paired ratios: each run over the baseline run of its own round,
#             median over the rounds.
#   snapshot  with 1,000 and 10,000 extra sleeping processes alive (vigil_proc_scan --hold N),
#             the cost of one full snapshot: the agent's own `snapshot_ns` (from
#             `vigil top --once -o json`) against reading every /proc/PID/status as ps and top
#             do (vigil_proc_scan), interleaved, BENCH_MEM_READS times each; and the CLI's round
#             trip for context.
# Missed targets are reported (PASS/FAIL in the summary). The script fails when it cannot run,
# and, after writing the results, when the agent side could not be measured (a build without
# `vigil top`): that is reported as NOT RUN, never as a pass.
#
# The script runs in a private mount namespace: the tracefs it mounts for bpftrace (if
# /sys/kernel/tracing is not mounted) and the bpffs it gives the agent exist only there and are
# unmounted on exit. On any exit a trap stops the workers, vigil top, the agent, bpftrace and the
# process holder (whose children exit with it) and removes its temporary directory.
#
# Environment:
#   BENCH_MEM_PARTS         parts to run (default "faults snapshot")
#   BENCH_MEM_ROUNDS        rounds of the faults part (default 5)
#   BENCH_MEM_SECONDS       length of one fault run (default 4)
#   BENCH_MEM_WORKERS       worker counts (default "1 2")
#   BENCH_MEM_CONFIGS       configurations (default "baseline agent+top bpftrace"; baseline
#                           first, ratios are against it; "agent" is also known)
#   BENCH_MEM_REGION_MIB    region mapped, touched and unmapped per iteration (default 16)
#   BENCH_MEM_TOP_INTERVAL  refresh interval of `vigil top` in agent+top (default 1s)
#   BENCH_MEM_PROCS         extra processes of the snapshot part (default "0 1000 10000"; 0 is
#                           the machine as it is)
#   BENCH_MEM_READS         snapshots and /proc scans per process count (default 10)
#   BENCH_MEM_HOLD_TIMEOUT  seconds to wait for the holder to fork its children (default 120)
#   BENCH_MEM_TOOLS_DIR     where vigil_mem_faults and vigil_proc_scan are (default
#                           BUILD_DIR/bench; built there when missing)
#   BENCH_AGENT_ARGS        extra agent arguments (word-split)
#   BENCH_READY_TIMEOUT     seconds to wait for the agent to answer `vigil status` (default 20)
#   BENCH_QUIET_PCT / BENCH_QUIET_MAX / BENCH_QUIET_BUDGET   15, 20, 60: before each fault run,
#                           wait while other work uses more than this % of a core (bench/lib.sh)
#   BENCH_RESULTS_DIR       where to write results (default bench/results next to this script)
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

log() { printf '[bench-mem %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

((EUID == 0)) || die "must run as root (BPF programs, tracefs, thousands of processes)"

# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
# The tracefs and bpffs mounted below exist only in a mount namespace of our own.
enter_private_mount_ns "$@"
resolve_build_dir "${1:-build}"

PARTS=${BENCH_MEM_PARTS:-"faults snapshot"}
ROUNDS=${BENCH_MEM_ROUNDS:-5}
RUN_SECONDS=${BENCH_MEM_SECONDS:-4}
WORKERS=${BENCH_MEM_WORKERS:-"1 2"}
CONFIGS=${BENCH_MEM_CONFIGS:-"baseline agent+top bpftrace"}
REGION_MIB=${BENCH_MEM_REGION_MIB:-16}
TOP_INTERVAL=${BENCH_MEM_TOP_INTERVAL:-1s}
PROCS=${BENCH_MEM_PROCS:-"0 1000 10000"}
READS=${BENCH_MEM_READS:-10}
HOLD_TIMEOUT=${BENCH_MEM_HOLD_TIMEOUT:-120}
TOOLS_DIR=${BENCH_MEM_TOOLS_DIR:-$BUILD_DIR/bench}
AGENT_EXTRA_ARGS=${BENCH_AGENT_ARGS:-}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-20}
QUIET_PCT=${BENCH_QUIET_PCT:-15}
QUIET_MAX=${BENCH_QUIET_MAX:-20}
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-60}
QUIET_SPENT=0
RESULTS_DIR=${BENCH_RESULTS_DIR:-$SCRIPT_DIR/results}

AGENT=$BUILD_DIR/agent/vigil-agent
CLI=$BUILD_DIR/cli/vigil
FAULTS=$TOOLS_DIR/vigil_mem_faults
PROC_SCAN=$TOOLS_DIR/vigil_proc_scan
TRACEFS=/sys/kernel/tracing
BPFTRACE_PROG='tracepoint:kmem:rss_stat { @[pid] = args->size; }'
CLK_TCK=$(getconf CLK_TCK)

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
has_part() { [[ " $PARTS " == *" $1 "* ]]; }
has_config() { [[ " $CONFIGS " == *" $1 "* ]]; }
for p in $PARTS; do
  case "$p" in faults | snapshot) ;; *) die "bad BENCH_MEM_PARTS entry '$p'" ;; esac
done
for c in $CONFIGS; do
  case "$c" in baseline | agent | agent+top | bpftrace) ;; *) die "bad BENCH_MEM_CONFIGS entry '$c'" ;; esac
done
[[ "$CONFIGS " == "baseline "* ]] || die "BENCH_MEM_CONFIGS must start with baseline (ratios are against it)"
for v in ROUNDS RUN_SECONDS REGION_MIB READS HOLD_TIMEOUT READY_TIMEOUT; do
  { is_uint "${!v}" && ((${!v} > 0)); } || die "$v (BENCH_MEM_*) must be a positive integer"
done
for v in QUIET_PCT QUIET_MAX QUIET_BUDGET; do is_uint "${!v}" || die "BENCH_$v must be a non-negative integer"; done
for w in $WORKERS; do { is_uint "$w" && ((w > 0 && w <= 64)); } || die "bad BENCH_MEM_WORKERS entry '$w'"; done
for n in $PROCS; do { is_uint "$n" && ((n <= 1000000)); } || die "bad BENCH_MEM_PROCS entry '$n'"; done
[[ "$TOP_INTERVAL" =~ ^[0-9]+(ms|s)$ ]] || die "BENCH_MEM_TOP_INTERVAL must look like 1s or 500ms"
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || die "python3 is required"

# ---------------------------------------------------------------------------------------------
# State and cleanup.

WORK=$(mktemp -d /tmp/vigil-bench-mem.XXXXXX) || die "mktemp failed"
SOCK=$WORK/vigil.sock
RUNS=$WORK/runs.jsonl
SNAPS=$WORK/snapshots.jsonl
HELPER=$WORK/mem.py
POLICY_DIR=$WORK/policies # empty: the machine's /etc/vigil/policies must not leak in
mkdir -p "$POLICY_DIR"
: >"$RUNS"
: >"$SNAPS"
AGENT_PID=
TOP_PID=
TOP_OUT=
BPFTRACE_PID=
BPFTRACE_OUT=
BPFTRACE_N=0
FAULTS_PID=
HOLD_PID=
ACTIVE=
MOUNTED_TRACEFS=0
MOUNTED_BPFFS=0
AGENT_CMD=
AGENT_VERSION=
NOTES=()
declare -A SKIP_REASON RAN
START=$EPOCHREALTIME
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

helper() { "$PYTHON" "$HELPER" "$@"; }
vigil_cli() { timeout 30 "$CLI" --server "unix://$SOCK" "$@"; }

stop_top() {
  [[ -n "$TOP_PID" ]] || return 0
  stop_pid "$TOP_PID" TERM 5
  TOP_PID=
}

stop_agent() {
  stop_top
  [[ -n "$AGENT_PID" ]] || return 0
  stop_pid "$AGENT_PID" TERM 15
  AGENT_PID=
  rm -f "$SOCK"
}

stop_bpftrace() {
  [[ -n "$BPFTRACE_PID" ]] || return 0
  stop_pid "$BPFTRACE_PID" INT 10 # bpftrace prints its map on SIGINT: the check reads it
  BPFTRACE_PID=
}

stop_holder() {
  [[ -n "$HOLD_PID" ]] || return 0
  stop_pid "$HOLD_PID" TERM 60 # it reaps its children before it exits
  HOLD_PID=
}

teardown_config() {
  case "$ACTIVE" in
    agent | agent+top) stop_agent ;;
    bpftrace) stop_bpftrace ;;
  esac
  ACTIVE=
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n "$FAULTS_PID" ]] && stop_pid "$FAULTS_PID" TERM 5 # its workers die with it
  stop_holder
  stop_agent
  stop_bpftrace
  if ((MOUNTED_TRACEFS)); then
    umount "$TRACEFS" 2>/dev/null || log "warning: could not unmount $TRACEFS"
  fi
  ((MOUNTED_BPFFS)) && umount /sys/fs/bpf 2>/dev/null
  rm -rf "$WORK"
  exit "$rc"
}
trap_exit cleanup

# ---------------------------------------------------------------------------------------------
# Python helper: per-run records and the snapshot part's parsing. The summary is further down.

cat >"$HELPER" <<'PY'
import json, re, statistics, sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_cli_json(path):
    """The CLI's JSON: one object, pretty-printed or on one line; with several, the last."""
    try:
        text = open(path).read()
    except OSError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def num(v):
    """A protobuf JSON number: uint64 comes as a string."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def snapshot_fields(d):
    """snapshot_ns, tasks seen and rows of a GetAccountingResponse (proto or JSON field names)."""
    if not isinstance(d, dict):
        return None
    ns = num(d.get("snapshot_ns", d.get("snapshotNs")))
    tasks = None
    for k in ("tasks_seen", "tasksSeen", "processes"):
        if k in d:
            tasks = num(d[k])
            break
    rows = d.get("rows") or []
    return {"snapshot_ns": ns, "tasks_seen": tasks, "rows": len(rows),
            "rows_with_rss": sum(1 for r in rows if num((r.get("memory") or {}).get("rss_bytes", (r.get("memory") or {}).get("rssBytes")))),
            "comm_field": any("comm" in r for r in rows)}


def cmd_record(*args):
    kv = dict(a.split("=", 1) for a in args)
    out = load(kv["faults"]) or {}
    wall = float(kv["wall"])
    rec = {"config": kv["config"], "round": int(kv["round"]), "order": int(kv["order"]),
           "workers": int(kv["workers"]), "exit_status": int(kv["rc"])}
    if out.get("pages_per_second"):
        rec.update(pages_per_second=out["pages_per_second"], faults_per_second=out.get("faults_per_second"),
                   cpu_ns_per_page=out.get("cpu_ns_per_page"), wall_seconds=out.get("wall_seconds"),
                   pages=out.get("pages"), minor_faults=out.get("minor_faults"),
                   worker_pids=[w["pid"] for w in out.get("per_worker", [])],
                   worker_cpu_seconds=round(out["cpu_seconds"]["user"] + out["cpu_seconds"]["system"], 3))
    else:
        rec["error"] = kv.get("err") or "vigil_mem_faults printed no result"
    cb, ca = [int(x) for x in kv["cpu_before"].split()], [int(x) for x in kv["cpu_after"].split()]
    tool_s = (int(kv["tool_after"] or 0) - int(kv["tool_before"] or 0)) / int(kv["clk_tck"])
    busy_s = (ca[0] - cb[0]) / int(kv["clk_tck"])
    if wall > 0:
        rec["tool_cpu_percent"] = round(100 * tool_s / wall, 2) if kv["tool_before"] else None
        if "worker_cpu_seconds" in rec:
            # Everything else the machine did meanwhile, as % of one core.
            rec["other_cpu_percent"] = round(max(0.0, 100 * (busy_s - tool_s - rec["worker_cpu_seconds"]) / wall), 1)
        rec["steal_percent"] = round(100 * (ca[1] - cb[1]) / int(kv["clk_tck"]) / wall, 1)
    rec["busy_before_pct"] = num(kv.get("busy_before"))
    rec["quiet_wait_seconds"] = num(kv.get("waited")) or 0
    if kv.get("tool_alive"):
        rec["tool_alive_after"] = kv["tool_alive"] == "1"
    if kv.get("top_out"):
        rec["top_output"] = kv["top_out"]
        rec["top_bytes_before"] = int(kv["top_bytes_before"] or 0)
        rec["top_bytes_during_run"] = int(kv["top_bytes_after"] or 0) - rec["top_bytes_before"]
    if kv.get("bpftrace_out"):
        rec["bpftrace_output"] = kv["bpftrace_out"]
    print(json.dumps(rec))


def cmd_brief():
    r = json.loads(sys.stdin.readline())
    if "pages_per_second" not in r:
        print("error: %s" % r.get("error"))
        return
    s = "%.0f pages/s, %.0f ns CPU/page" % (r["pages_per_second"], r.get("cpu_ns_per_page") or 0)
    if r.get("tool_cpu_percent") is not None:
        s += ", tool %.1f%% of a core" % r["tool_cpu_percent"]
    s += "  [others %s%% of a core]" % r.get("other_cpu_percent")
    print(s)


def cmd_field(path, key):
    d = load(path) or {}
    print(d.get(key, ""))


def cmd_snapshot(path):
    """One line for the log, exit 1 if the file is no GetAccountingResponse with snapshot_ns."""
    f = snapshot_fields(load_cli_json(path))
    if not f or f["snapshot_ns"] is None:
        sys.exit(1)
    print("snapshot_ns %d, tasks %s, %d rows" % (f["snapshot_ns"], f["tasks_seen"], f["rows"]))


def cmd_snap_record(work, n, reads, hold, procs_now, top_error):
    reads = int(reads)
    scans, agent, cli_ms = [], [], []
    for i in range(1, reads + 1):
        s = load("%s/scan-%s-%d.json" % (work, n, i))
        if s:
            scans.append({"ns": s["median_ns"], "processes": s["processes"], "vanished": s["vanished"]})
        f = snapshot_fields(load_cli_json("%s/top-%s-%d.json" % (work, n, i)))
        if f and f["snapshot_ns"] is not None:
            agent.append(f)
    try:
        with open("%s/cli-%s.txt" % (work, n)) as fh:
            cli_ms = [float(x) for x in fh.read().split()]
    except OSError:
        pass
    rec = {"extra_processes": int(n), "hold": load(hold) if hold else None,
           "processes_in_proc": num(procs_now), "reads": reads, "proc_scan": scans, "agent": agent,
           "cli_round_trip_ms": cli_ms if agent else [], "agent_error": top_error or None}
    print(json.dumps(rec))


COMMANDS = {"record": cmd_record, "brief": cmd_brief, "field": cmd_field, "snapshot": cmd_snapshot,
            "snap-record": cmd_snap_record}
if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
PY

# ---------------------------------------------------------------------------------------------
# Preconditions.

bench_lock

if [[ ! -x "$FAULTS" || ! -x "$PROC_SCAN" ]]; then
  [[ "$TOOLS_DIR" == "$BUILD_DIR/bench" ]] || die "$FAULTS or $PROC_SCAN not found (BENCH_MEM_TOOLS_DIR)"
  log "building vigil_mem_faults and vigil_proc_scan"
  cmake --build "$BUILD_DIR" --target vigil_mem_faults vigil_proc_scan -j "$(nproc)" >"$WORK/build.log" 2>&1 ||
    die "cannot build vigil_mem_faults and vigil_proc_scan in $BUILD_DIR: $(grep -m1 -i error "$WORK/build.log")"
fi

# The agent side needs the agent and a CLI with `vigil top`. Without them the configurations that
# use the agent are NOT RUN, loudly, and the script fails at the end.
AGENT_SKIP=
if [[ ! -x "$AGENT" ]]; then
  AGENT_SKIP="agent binary $AGENT not found (build it first)"
elif [[ ! -x "$CLI" ]]; then
  AGENT_SKIP="CLI $CLI not found (build it first)"
elif ! "$CLI" top --help >"$WORK/top-help.txt" 2>&1; then
  AGENT_SKIP="vigil top is not available in this build (\`vigil top --help\` fails: $(head -c 200 "$WORK/top-help.txt" | tr '\n' ' '))"
elif ! grep -q -- '--once' "$WORK/top-help.txt" || ! grep -q -- '--interval' "$WORK/top-help.txt"; then
  AGENT_SKIP="vigil top is not available in this build (its help lists no --once or no --interval)"
fi
if [[ -n "$AGENT_SKIP" ]]; then
  log "ERROR: $AGENT_SKIP; the agent's side of the benchmark is NOT RUN"
  for c in agent agent+top; do has_config "$c" && SKIP_REASON[$c]=$AGENT_SKIP; done
fi
if has_config bpftrace && ! command -v bpftrace >/dev/null; then
  SKIP_REASON[bpftrace]="bpftrace not installed"
fi
HAVE_BPFTOOL=0
command -v bpftool >/dev/null && HAVE_BPFTOOL=1

# bpftrace attaches tracepoints through tracefs.
if has_part faults && has_config bpftrace && [[ -z "${SKIP_REASON[bpftrace]:-}" ]] && ! mountpoint -q "$TRACEFS"; then
  if mount -t tracefs nodev "$TRACEFS"; then
    MOUNTED_TRACEFS=1
    log "mounted tracefs on $TRACEFS (in this script's mount namespace; unmounted at exit)"
  else
    SKIP_REASON[bpftrace]="cannot mount tracefs on $TRACEFS"
  fi
fi
# A bpffs of our own: whatever the agent pins exists only in this mount namespace.
if [[ -z "$AGENT_SKIP" ]] && mount -t bpf bpf /sys/fs/bpf; then
  MOUNTED_BPFFS=1
fi

if pgrep -x vigil-agent >/dev/null || pgrep -x bpftrace >/dev/null; then
  log "warning: a vigil-agent or bpftrace is already running; its probes are active in every configuration"
  NOTES+=("A vigil-agent or bpftrace not started by the benchmark was running; its probes were active in every configuration.")
fi
if "$PYTHON" -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0.5 else 1)' "${LOADAVG_START%% *}"; then
  log "note: 1-minute load average is ${LOADAVG_START%% *}; other load makes the ratios noisy"
  NOTES+=("The 1-minute load average was ${LOADAVG_START%% *} when the benchmark started: other work was running on the machine.")
fi

# ---------------------------------------------------------------------------------------------
# The tools.

start_agent() {
  local -a args=(--api "unix://$SOCK" --policy-dir "$POLICY_DIR" --flow-interfaces none)
  # shellcheck disable=SC2206
  [[ -n "$AGENT_EXTRA_ARGS" ]] && args+=($AGENT_EXTRA_ARGS)
  AGENT_CMD="vigil-agent ${args[*]}"
  AGENT_CMD=${AGENT_CMD//$WORK/\$TMP}
  rm -f "$SOCK"
  "$AGENT" "${args[@]}" >>"$WORK/agent.log" 2>&1 &
  AGENT_PID=$!
  local deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
      wait "$AGENT_PID" 2>/dev/null
      AGENT_PID=
      SETUP_ERROR="vigil-agent exited during start-up: $(tail -n 3 "$WORK/agent.log" | tr '\n' ' ' | cut -c 1-300)"
      return 1
    fi
    if vigil_cli status -o json >"$WORK/status.json" 2>/dev/null; then
      [[ -n "$AGENT_VERSION" ]] || AGENT_VERSION=$(helper field "$WORK/status.json" version)
      return 0
    fi
    sleep 0.2
  done
  SETUP_ERROR="vigil-agent did not answer \`vigil status\` within ${READY_TIMEOUT}s"
  stop_agent
  return 1
}

# One snapshot through the CLI into $1; sets TOP_ERROR when there is none. The CLI's own deadline
# rather than timeout(1), which would add a process start to the round trip being timed.
top_once() {
  TOP_ERROR=
  if ! "$CLI" --server "unix://$SOCK" --timeout 30s top --once -o json >"$1" 2>"$WORK/top-once.err"; then
    TOP_ERROR="\`vigil top --once -o json\` failed: $(head -c 300 "$WORK/top-once.err" | tr '\n' ' ')"
    return 1
  fi
  if ! helper snapshot "$1" >/dev/null; then
    TOP_ERROR="\`vigil top --once -o json\` printed no snapshot_ns: $(head -c 200 "$1" | tr '\n' ' ')"
    return 1
  fi
}

# `vigil top` refreshing every TOP_INTERVAL as a user runs it (the table: `-o json` implies
# --once), its output to a file of its own instead of a terminal. No timeout: it runs until
# stop_top.
start_top() {
  TOP_OUT=$WORK/top-refresh-$RANDOM.out
  "$CLI" --server "unix://$SOCK" top --interval "$TOP_INTERVAL" >"$TOP_OUT" 2>"$WORK/top.err" &
  TOP_PID=$!
  sleep 1.5 # its first refresh, and the proof that it keeps running
  if ! kill -0 "$TOP_PID" 2>/dev/null; then
    wait "$TOP_PID" 2>/dev/null
    TOP_PID=
    SETUP_ERROR="\`vigil top --interval $TOP_INTERVAL\` exited at once: $(head -c 300 "$WORK/top.err" | tr '\n' ' ')"
    return 1
  fi
}

start_bpftrace() {
  BPFTRACE_N=$((BPFTRACE_N + 1))
  BPFTRACE_OUT=$WORK/bpftrace-$BPFTRACE_N.out
  bpftrace -e "$BPFTRACE_PROG" >"$BPFTRACE_OUT" 2>>"$WORK/bpftrace.log" &
  BPFTRACE_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$BPFTRACE_PID" 2>/dev/null; then
      wait "$BPFTRACE_PID" 2>/dev/null
      BPFTRACE_PID=
      SETUP_ERROR="bpftrace exited during start-up: $(grep -v RLIMIT_MEMLOCK "$WORK/bpftrace.log" | tail -n 3 | tr '\n' ' ')"
      return 1
    fi
    # Attached once bpftool lists its program on the tracepoint; without bpftool, give it 3 s.
    if ((HAVE_BPFTOOL)); then
      bpftool perf show 2>/dev/null | grep -q "^pid $BPFTRACE_PID .*rss_stat" && return 0
    elif ((i >= 30)); then
      return 0
    fi
    sleep 0.1
  done
  SETUP_ERROR="bpftrace did not attach to kmem:rss_stat within 10 s"
  stop_bpftrace
  return 1
}

setup_baseline() { ACTIVE=baseline; }
setup_agent() { ACTIVE=agent; start_agent; }
setup_agent+top() {
  ACTIVE=agent+top
  start_agent || return 1
  top_once "$WORK/top-check.json" || { SETUP_ERROR=$TOP_ERROR; return 1; }
  start_top
}
setup_bpftrace() { ACTIVE=bpftrace; start_bpftrace; }

# ---------------------------------------------------------------------------------------------
# Part 1: the fault storm, every configuration once per round, the order rotated every round.

# "busy steal" clock ticks of the whole machine, from /proc/stat.
cpu_sample() {
  local _cpu u n s _idle _iow irq sirq st _rest
  read -r _cpu u n s _idle _iow irq sirq st _rest </proc/stat
  echo "$((u + n + s + irq + sirq)) $st"
}

# utime+stime clock ticks of the given pids together (those still alive).
tool_ticks() {
  local pid stat rest total=0
  local -a f
  for pid in "$@"; do
    { stat=$(<"/proc/$pid/stat"); } 2>/dev/null || continue
    rest=${stat##*) } # comm may hold spaces; the fields after it start at "state" (field 3)
    read -ra f <<<"$rest"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

fault_run() { # config round order workers
  local config=$1 round=$2 order=$3 w=$4 out=$WORK/faults-$1-$2-$4.json
  local -a tools=()
  case "$config" in
    agent) tools=("$AGENT_PID") ;;
    agent+top) tools=("$AGENT_PID" "$TOP_PID") ;;
    bpftrace) tools=("$BPFTRACE_PID") ;;
  esac
  wait_machine_quiet # nothing of ours is busy now but an idle tool
  local tb="" ta="" cb ca t0 t1 rc alive="" top_b="" top_a=""
  ((${#tools[@]})) && tb=$(tool_ticks "${tools[@]}")
  [[ "$config" == agent+top ]] && top_b=$(file_size "$TOP_OUT")
  cb=$(cpu_sample)
  t0=$EPOCHREALTIME
  # In the background so that a signal reaches the trap at once, not after the run.
  "$FAULTS" --seconds "$RUN_SECONDS" --workers "$w" --region-mib "$REGION_MIB" >"$out" 2>"$WORK/faults.err" &
  FAULTS_PID=$!
  wait "$FAULTS_PID"
  rc=$?
  FAULTS_PID=
  t1=$EPOCHREALTIME
  ca=$(cpu_sample)
  if ((${#tools[@]})); then
    ta=$(tool_ticks "${tools[@]}")
    alive=1
    local pid
    for pid in "${tools[@]}"; do kill -0 "$pid" 2>/dev/null || alive=0; done
  fi
  [[ "$config" == agent+top ]] && top_a=$(file_size "$TOP_OUT")
  helper record config="$config" round="$round" order="$order" workers="$w" rc="$rc" faults="$out" \
    err="$(head -c 200 "$WORK/faults.err" | tr '\n' ' ')" \
    wall="$("$PYTHON" -c "print(${t1/,/.} - ${t0/,/.})")" cpu_before="$cb" cpu_after="$ca" \
    tool_before="$tb" tool_after="$ta" clk_tck="$CLK_TCK" tool_alive="$alive" \
    busy_before="${BUSY_BEFORE:-}" waited="$WAITED" \
    top_out="$([[ "$config" == agent+top ]] && echo "$TOP_OUT")" top_bytes_before="$top_b" top_bytes_after="$top_a" \
    bpftrace_out="$([[ "$config" == bpftrace ]] && echo "$BPFTRACE_OUT")" >>"$RUNS"
  log "  $w worker(s): $(tail -n 1 "$RUNS" | helper brief)"
  [[ "$alive" == 0 ]] && log "  warning: a $config process died during the run"
  return 0
}

fault_runs() { # config round order
  local w
  for w in $WORKERS; do fault_run "$1" "$2" "$3" "$w"; done
}

if has_part faults; then
  log "faults: ${RUN_SECONDS}s runs, workers: $WORKERS, configurations: $CONFIGS, $ROUNDS rounds"
  run_rotated_rounds "$ROUNDS" "$CONFIGS" fault_runs
  [[ -n "${RAN[agent+top]:-}${RAN[agent]:-}" ]] && FAULTS_AGENT_CMD=$AGENT_CMD
fi
FAULTS_END=$EPOCHREALTIME
# Before the snapshot part, which can lift the load average (10,000 forks).
LOADAVG_FAULTS_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Part 2: one snapshot with N extra processes alive: the agent's iterator against /proc.

SNAP_SKIP=
has_part snapshot || SNAP_SKIP="not in BENCH_MEM_PARTS"
ULIMIT_BEFORE=$(ulimit -u)
PID_MAX=$(cat /proc/sys/kernel/pid_max)
THREADS_MAX=$(cat /proc/sys/kernel/threads-max)
# How many more processes this machine allows: pid_max and threads-max against the tasks that
# exist now (the 4th field of /proc/loadavg: running/total), with room for everything else;
# and about 150 KiB of kernel and page-table memory per sleeping process (measured: 10,000 of
# them take about 1.3 GiB), at most half of what is available.
tasks_now() { local l; l=$(cut -d' ' -f4 /proc/loadavg); echo "${l#*/}"; }
procs_in_proc() { local -a d=(/proc/[0-9]*); echo "${#d[@]}"; }
max_extra() {
  local t avail by_mem
  t=$(tasks_now)
  avail=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
  by_mem=$((avail / 2 / 150))
  local m=$((PID_MAX - t - 1000))
  ((THREADS_MAX - t - 1000 < m)) && m=$((THREADS_MAX - t - 1000))
  ((by_mem < m)) && m=$by_mem
  ((m < 0)) && m=0
  echo "$m"
}

snapshot_point() { # extra-processes
  local n=$1 hold="" procs i t0 t1 top_error="" limit
  if ((n > 0)); then
    limit=$(max_extra)
    if ((n > limit)); then
      log "snapshot: $n processes asked for, this machine allows about $limit more (pid_max $PID_MAX, threads-max $THREADS_MAX, memory): capping"
      NOTES+=("Snapshot part: $n extra processes asked for, capped at $limit (pid_max $PID_MAX, threads-max $THREADS_MAX, half the available memory at about 150 KiB per process).")
      n=$limit
    fi
    # RLIMIT_NPROC counts this user's processes (root with CAP_SYS_RESOURCE is exempt anyway).
    local need=$(($(tasks_now) + n + 1000)) cur
    cur=$(ulimit -u)
    if [[ "$cur" != unlimited ]] && ((cur < need)); then
      if ulimit -u "$need" 2>/dev/null || ulimit -S -u "$(ulimit -H -u)" 2>/dev/null; then
        log "snapshot: raised ulimit -u from $cur to $(ulimit -u)"
      fi
    fi
    hold=$WORK/hold-$1.json
    "$PROC_SCAN" --hold "$n" >"$hold" 2>"$WORK/hold.err" &
    HOLD_PID=$!
    local deadline=$((SECONDS + HOLD_TIMEOUT))
    while [[ ! -s "$hold" ]] && ((SECONDS < deadline)) && kill -0 "$HOLD_PID" 2>/dev/null; do sleep 0.1; done
    if [[ ! -s "$hold" ]]; then
      log "warning: the holder did not report within ${HOLD_TIMEOUT}s: $(head -c 200 "$WORK/hold.err")"
      NOTES+=("Snapshot part: the holder of $n processes did not report within ${HOLD_TIMEOUT}s; that point is missing.")
      stop_holder
      return 0
    fi
    log "snapshot: holding $(helper field "$hold" alive) of $n extra processes ($(helper field "$hold" fork_seconds) s to fork)$(
      e=$(helper field "$hold" error); [[ -n "$e" ]] && echo "; stopped by: $e")"
    sleep 2 # let the agent take in the fork events
  fi
  procs=$(procs_in_proc)
  # Warm-up, untimed: the first scan creates /proc's entries for new pids.
  "$PROC_SCAN" --repeat 1 --warmup 0 >/dev/null
  if [[ -n "$AGENT_PID" ]] && ! top_once "$WORK/top-warmup.json"; then
    top_error=$TOP_ERROR
    log "snapshot: $TOP_ERROR"
  fi
  : >"$WORK/cli-$1.txt"
  for ((i = 1; i <= READS; i++)); do
    "$PROC_SCAN" --repeat 1 --warmup 0 >"$WORK/scan-$1-$i.json" || log "warning: vigil_proc_scan failed"
    if [[ -n "$AGENT_PID" && -z "$top_error" ]]; then
      t0=$EPOCHREALTIME
      top_once "$WORK/top-$1-$i.json" || { top_error=$TOP_ERROR; log "snapshot: $TOP_ERROR"; }
      t1=$EPOCHREALTIME
      "$PYTHON" -c "print(round(1000 * (${t1/,/.} - ${t0/,/.}), 3))" >>"$WORK/cli-$1.txt"
    fi
  done
  helper snap-record "$WORK" "$1" "$READS" "$hold" "$procs" "$top_error" >>"$SNAPS"
  log "snapshot: $procs processes in /proc: $(tail -n 1 "$SNAPS" | "$PYTHON" -c '
import json, statistics, sys
r = json.loads(sys.stdin.readline())
s = "/proc scan median %.2f ms" % (statistics.median(x["ns"] for x in r["proc_scan"]) / 1e6) if r["proc_scan"] else "no /proc scan"
if r["agent"]:
    s += ", agent snapshot median %.3f ms (%s tasks), CLI round trip median %.1f ms" % (
        statistics.median(x["snapshot_ns"] for x in r["agent"]) / 1e6, r["agent"][-1]["tasks_seen"],
        statistics.median(r["cli_round_trip_ms"]))
print(s)')"
  if [[ -n "$HOLD_PID" ]]; then
    stop_holder
    # The children exit as soon as the holder closes their pipe; wait for /proc to shrink back.
    for ((i = 0; i < 100; i++)); do
      (($(procs_in_proc) < procs - n / 2)) && break
      sleep 0.1
    done
  fi
}

if [[ -z "$SNAP_SKIP" ]]; then
  ACTIVE=
  if [[ -n "$AGENT_SKIP" ]]; then
    SNAP_AGENT_SKIP=$AGENT_SKIP
  elif ! start_agent; then
    SNAP_AGENT_SKIP=$SETUP_ERROR
    log "snapshot: $SETUP_ERROR"
  else
    ACTIVE=agent
    SNAP_AGENT_CMD=$AGENT_CMD
  fi
  for n in $PROCS; do snapshot_point "$n"; done
  teardown_config
fi

# ---------------------------------------------------------------------------------------------
# Output.

commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo none)
[[ -n "$(git -C "$REPO_DIR" status --porcelain 2>/dev/null | head -n1)" ]] && commit+="+dirty"
for c in "${!SKIP_REASON[@]}"; do printf '%s\t%s\n' "$c" "${SKIP_REASON[$c]}"; done >"$WORK/skips.tsv"
printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}" >"$WORK/notes.txt"
# Values with arbitrary text go through the environment into json.dumps, never into JSON by hand.
META_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) META_COMMIT=$commit META_KERNEL=$(uname -r) META_CPUS=$(nproc) \
  META_CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) \
  META_THP=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null) \
  META_BPFTRACE=$(bpftrace --version 2>/dev/null) META_BPFTRACE_PROG=$BPFTRACE_PROG \
  META_AGENT_VERSION=$AGENT_VERSION META_AGENT_CMD=${FAULTS_AGENT_CMD:-${SNAP_AGENT_CMD:-}} \
  META_AGENT_SKIP=$AGENT_SKIP META_SNAP_SKIP=$SNAP_SKIP META_SNAP_AGENT_SKIP=${SNAP_AGENT_SKIP:-} \
  META_PARTS=$PARTS META_CONFIGS=$CONFIGS META_WORKERS=$WORKERS META_ROUNDS=$ROUNDS \
  META_SECONDS=$RUN_SECONDS META_REGION_MIB=$REGION_MIB META_TOP_INTERVAL=$TOP_INTERVAL \
  META_PROCS=$PROCS META_READS=$READS META_ULIMIT_BEFORE=$ULIMIT_BEFORE META_ULIMIT_AFTER=$(ulimit -u) \
  META_PID_MAX=$PID_MAX META_THREADS_MAX=$THREADS_MAX META_QUIET_PCT=$QUIET_PCT META_QUIET_SPENT=$QUIET_SPENT \
  META_LOADAVG_START=$LOADAVG_START META_LOADAVG_FAULTS_END=$LOADAVG_FAULTS_END \
  META_LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg) \
  META_TRACEFS_MOUNTED=$MOUNTED_TRACEFS \
  META_FAULTS_SECONDS=$("$PYTHON" -c "print(round(${FAULTS_END/,/.} - ${START/,/.}))") \
  META_DURATION=$("$PYTHON" -c "print(round(${EPOCHREALTIME/,/.} - ${START/,/.}))") \
  "$PYTHON" -c '
import json, os, sys
m = {k[5:].lower(): v for k, v in os.environ.items() if k.startswith("META_")}
json.dump(m, open(sys.argv[1], "w"), indent=1)' "$WORK/meta.json" || die "cannot write meta.json"

cat >"$WORK/summarize.py" <<'PY'
import json, re, statistics, sys

work, out_json, out_md = sys.argv[1:4]
meta = json.load(open(f"{work}/meta.json"))
runs = [json.loads(l) for l in open(f"{work}/runs.jsonl") if l.strip()]
snaps = [json.loads(l) for l in open(f"{work}/snapshots.jsonl") if l.strip()]
skips = dict(l.rstrip("\n").split("\t", 1) for l in open(f"{work}/skips.tsv") if "\t" in l)
notes = [l.rstrip("\n") for l in open(f"{work}/notes.txt") if l.strip()]

RATE_TARGET = 0.97  # agent+top's fault rate over the bare rate, at least
SNAP_TARGET = 10.0  # the /proc scan over the agent's snapshot, at least
SNAP_TARGET_FROM = 1000  # extra processes from which the snapshot target applies
configs = meta["configs"].split()
workers = [int(w) for w in meta["workers"].split()]
parts = meta["parts"].split()


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, digits=0, scale=1):
    return "-" if v is None else f"{v / scale:,.{digits}f}"


# --- faults: checks that each tool really was in the path ----------------------------------
def bpftrace_pids(path):
    try:
        return {int(m) for m in re.findall(r"^@\[(\d+)\]:", open(path).read(), re.M)}
    except OSError:
        return None


for r in runs:
    if r["config"] == "bpftrace" and r.get("bpftrace_output") and r.get("worker_pids"):
        seen = bpftrace_pids(r["bpftrace_output"])
        r["bpftrace_saw_workers"] = None if seen is None else all(p in seen for p in r["worker_pids"])
        r["bpftrace_map_entries"] = None if seen is None else len(seen)
    if r["config"] == "agent+top" and r.get("top_output"):
        r["top_refreshed"] = (r.get("top_bytes_during_run") or 0) > 0
        # The table's header line ("Processes: N, RSS ...; snapshot N us") starts each refresh.
        try:
            with open(r["top_output"], "rb") as f:
                f.seek(r["top_bytes_before"])
                chunk = f.read(max(0, r["top_bytes_during_run"])).decode(errors="replace")
            r["top_refreshes_during_run"] = len(re.findall(r"^Processes:", chunk, re.M))
        except (OSError, KeyError, TypeError):
            pass
    for k in ("bpftrace_output", "top_output", "top_bytes_before"):
        r.pop(k, None)

rows = []
for w in workers:
    base = {r["round"]: r.get("pages_per_second") for r in runs if r["workers"] == w and r["config"] == "baseline"}
    base_cpu = {r["round"]: r.get("cpu_ns_per_page") for r in runs if r["workers"] == w and r["config"] == "baseline"}
    base_med = med(base.values())
    for c in configs:
        rs = [r for r in runs if r["workers"] == w and r["config"] == c]
        if not rs:
            continue
        ok = [r for r in rs if r.get("pages_per_second")]
        vals = [r["pages_per_second"] for r in ok]
        paired = [ratio(r["pages_per_second"], base.get(r["round"])) for r in ok]
        paired = [p for p in paired if p is not None]
        row = {"workers": w, "config": c, "runs": len(rs), "failed": len(rs) - len(ok),
               "median_pages_per_second": med(vals), "min": min(vals, default=None), "max": max(vals, default=None),
               "ratio_of_medians": ratio(med(vals), base_med),
               "paired_ratio": med(paired), "paired_min": min(paired, default=None), "paired_max": max(paired, default=None),
               "paired_ratios": [round(p, 4) for p in paired],
               "cpu_ns_per_page": med([r.get("cpu_ns_per_page") for r in ok]),
               "cpu_per_page_paired": med([ratio(base_cpu.get(r["round"]), r.get("cpu_ns_per_page")) for r in ok]),
               "tool_cpu_percent": med([r.get("tool_cpu_percent") for r in ok]),
               "other_cpu_percent": med([r.get("other_cpu_percent") for r in ok])}
        rows.append(row)


def row_of(w, c):
    return next((r for r in rows if r["workers"] == w and r["config"] == c), None)


targets = []
if "faults" in parts:
    ag = [row_of(w, "agent+top") for w in workers]
    if "agent+top" not in configs:
        res, detail = "NOT RUN", "agent+top not in BENCH_MEM_CONFIGS"
    elif any(r is None or r["paired_ratio"] is None for r in ag):
        res, detail = "NOT RUN", skips.get("agent+top", "no agent+top runs")
    else:
        res = "PASS" if all(r["paired_ratio"] >= RATE_TARGET for r in ag) else "FAIL"
        parts_ = []
        for w, r in zip(workers, ag):
            b = row_of(w, "bpftrace")
            # Beside the rate, the steadier figure: CPU per page, baseline over configuration,
            # paired the same way.
            s = f"{w} worker{'s' if w > 1 else ''}: **{r['paired_ratio']:.3f}**, CPU per page {fmt(r['cpu_per_page_paired'], 3)}"
            if b and b["paired_ratio"] is not None:
                s += f" (bpftrace on kmem:rss_stat: {b['paired_ratio']:.3f}, CPU per page {fmt(b['cpu_per_page_paired'], 3)})"
            parts_.append(s)
        detail = "; ".join(parts_)
        noisy = [w for w, r in zip(workers, ag) if (r["paired_max"] or 0) - (r["paired_min"] or 0) > 0.1]
        if noisy:
            detail += (f". **Noisy** at {', '.join(str(w) for w in noisy)} worker(s): the paired ratios spread by more "
                       "than 0.1 (other load on the machine, see the Others column under Every run); the CPU-per-page "
                       "ratio is the steadier figure there")
    targets.append({"name": "fault_rate", "result": res, "detail": detail,
                    "target": f"agent with `vigil top` refreshing keeps at least {RATE_TARGET} of the bare page-fault rate "
                              "(median of per-round ratios), at every worker count"})

# --- snapshot ------------------------------------------------------------------------------
snap_rows = []
for s in snaps:
    scan_ns = [x["ns"] for x in s["proc_scan"]]
    agent_ns = [a["snapshot_ns"] for a in s["agent"]]
    hold = s.get("hold") or {}
    r = {"extra_processes_requested": hold.get("requested", s["extra_processes"]),
         "extra_processes_alive": hold.get("alive", 0), "hold_error": hold.get("error") or None,
         "processes_in_proc": s["processes_in_proc"],
         "proc_scan_processes": med([x["processes"] for x in s["proc_scan"]]),
         "proc_scan_median_ns": med(scan_ns), "proc_scan_min_ns": min(scan_ns, default=None),
         "proc_scan_max_ns": max(scan_ns, default=None), "proc_scan_ns": scan_ns,
         "agent_tasks_seen": med([a["tasks_seen"] for a in s["agent"]]),
         "agent_rows": med([a["rows"] for a in s["agent"]]),
         "snapshot_median_ns": med(agent_ns), "snapshot_min_ns": min(agent_ns, default=None),
         "snapshot_max_ns": max(agent_ns, default=None), "snapshot_ns": agent_ns,
         "cli_round_trip_median_ms": med(s["cli_round_trip_ms"]),
         "cli_round_trip_ms": s["cli_round_trip_ms"], "agent_error": s.get("agent_error")}
    r["scan_over_snapshot"] = ratio(r["proc_scan_median_ns"], r["snapshot_median_ns"])
    r["scan_over_cli_round_trip"] = ratio(r["proc_scan_median_ns"], (r["cli_round_trip_median_ms"] or 0) * 1e6 or None)
    r["proc_scan_ns_per_process"] = ratio(r["proc_scan_median_ns"], r["proc_scan_processes"])
    r["snapshot_ns_per_task"] = ratio(r["snapshot_median_ns"], r["agent_tasks_seen"])
    snap_rows.append(r)

if "snapshot" in parts:
    pts = [r for r in snap_rows if r["extra_processes_requested"] >= SNAP_TARGET_FROM]
    agent_skip = meta.get("snap_agent_skip") or next((r["agent_error"] for r in pts if r["agent_error"]), None)
    if not pts:
        res, detail = "NOT RUN", "no point with at least %d extra processes" % SNAP_TARGET_FROM
    elif any(r["scan_over_snapshot"] is None for r in pts):
        res, detail = "NOT RUN", agent_skip or "no agent snapshots"
    else:
        res = "PASS" if all(r["scan_over_snapshot"] >= SNAP_TARGET for r in pts) else "FAIL"
        detail = "; ".join("%s processes: /proc scan %.2f ms, snapshot %.3f ms: **%.1fx**" % (
            f"{r['processes_in_proc']:,}", r["proc_scan_median_ns"] / 1e6, r["snapshot_median_ns"] / 1e6,
            r["scan_over_snapshot"]) for r in pts)
    targets.append({"name": "snapshot_cost", "result": res, "detail": detail,
                    "target": f"one agent snapshot at least {SNAP_TARGET:g} times cheaper than reading every "
                              f"/proc/PID/status, with {SNAP_TARGET_FROM:,} extra processes and more (medians)"})

checks = []
bt = [r for r in runs if r["config"] == "bpftrace" and "bpftrace_saw_workers" in r]
if bt:
    good = sum(1 for r in bt if r["bpftrace_saw_workers"])
    checks.append({"name": "bpftrace map", "result": "OK" if good == len(bt) else "FAILED",
                   "detail": f"the workers' pids were in bpftrace's map (printed when it stopped) in {good} of {len(bt)} runs"})
tp = [r for r in runs if r["config"] == "agent+top" and "top_refreshed" in r]
if tp:
    good = sum(1 for r in tp if r["top_refreshed"] and r.get("tool_alive_after", True))
    checks.append({"name": "vigil top refreshing", "result": "OK" if good == len(tp) else "FAILED",
                   "detail": f"`vigil top` was alive and printed during {good} of {len(tp)} runs"})
dead = [r for r in runs if r.get("tool_alive_after") is False]
if dead:
    checks.append({"name": "tools alive", "result": "FAILED",
                   "detail": f"{len(dead)} run(s) ended with the tool (agent, vigil top or bpftrace) gone"})

summary = {"targets": targets, "checks": checks, "faults": rows, "snapshot": snap_rows}
json.dump({"benchmark": "mem", "meta": meta, "summary": summary, "skipped": skips, "notes": notes,
           "runs": runs}, open(out_json, "w"), indent=1)
open(out_json, "a").write("\n")

# --- markdown -------------------------------------------------------------------------------
L = []
w_ = L.append
w_("# Memory accounting benchmark")
w_("")
w_(f"Generated by `bench/run_mem.sh` on {meta['date']} (commit `{meta['commit']}`). Do not edit by hand; "
   "see [bench/README.md](../README.md) for what is measured and how to read it.")
w_("")
w_("| | |")
w_("|---|---|")
w_(f"| Kernel | {meta['kernel']} |")
w_(f"| CPU | {meta['cpus']} x {meta['cpu_model']} |")
w_(f"| Fault storm | `vigil_mem_faults --seconds {meta['seconds']} --region-mib {meta['region_mib']}`: map {meta['region_mib']} MiB "
   f"anonymous, write one byte per 4 KiB page (MADV_NOHUGEPAGE; THP here: `{meta['thp']}`), unmap, repeat; workers: {meta['workers']} |")
w_(f"| Rounds | {meta['rounds']}, every configuration once per round, the order rotated every round |")
w_(f"| Agent | {meta['agent_version'] or 'n/a'} (`{meta['agent_cmd'] or 'not run'}`); agent+top adds "
   f"`vigil top --interval {meta['top_interval']}` (the refreshing table, to a file) during the runs |")
w_(f"| bpftrace | {meta['bpftrace'] or 'n/a'}: `{meta['bpftrace_prog']}` |")
w_(f"| Snapshot part | extra sleeping processes: {meta['procs']}; {meta['reads']} interleaved reads each of `vigil top --once -o json` "
   f"and `vigil_proc_scan` (one scan of every /proc/PID/status) |")
w_(f"| Limits | ulimit -u {meta['ulimit_before']}" + (f" (raised to {meta['ulimit_after']})" if meta['ulimit_after'] != meta['ulimit_before'] else "")
   + f", pid_max {meta['pid_max']}, threads-max {meta['threads_max']} |")
w_(f"| Load average | at the start {meta['loadavg_start']}; after the fault storm {meta['loadavg_faults_end']}; at the end "
   f"{meta['loadavg_end']} (the snapshot part's forks can lift it) |")
w_(f"| Duration | {meta['duration']} s ({meta['faults_seconds']} s for the fault storm); waited {meta['quiet_spent']} s for other load to pass |")
w_("")
w_("## Targets")
w_("")
for t in targets:
    w_(f"- **{t['result']}**: {t['target']}: {t['detail']}")
for c in checks:
    w_(f"- Check {c['name']}: **{c['result']}**: {c['detail']}")
busy = [r.get("other_cpu_percent") for r in runs if r.get("other_cpu_percent") is not None]
disturbed = [b for b in busy if b > float(meta["quiet_pct"])]
if busy and len(disturbed) * 2 > len(busy):
    w_(f"- **Caution**: other work used more than {meta['quiet_pct']}% of a core during {len(disturbed)} of {len(busy)} runs "
       f"(median {med(busy):.0f}%): the ratios are noisy; see the CPU-per-page column and repeat on a quieter machine.")
w_("")
if "faults" in parts:
    w_("## Page-fault rate")
    w_("")
    for c, why in skips.items():
        w_(f"- {c}: **NOT RUN**: {why}")
    if skips:
        w_("")
    w_("Pages touched per second, all workers together (one minor fault per page). Paired = each run over the "
       "baseline run of its own round, the median over the rounds (min - max beside it): the figure to read on a shared "
       "machine. CPU ns/page is the workers' user+system time per page: a probe on the fault path runs in the faulting "
       "task and lands there; \"vs baseline\" is the baseline's CPU per page over the configuration's (paired), so "
       "below 1 means dearer faults. Tool CPU is the agent (and `vigil top`) or bpftrace, % of one core.")
    w_("")
    w_("| Workers | Config | Runs | Median pages/s | min - max | Ratio of medians | **Paired** | Paired min - max | CPU ns/page | vs baseline | Tool CPU % | Others % |")
    w_("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = r["config"] == "baseline"
        w_(f"| {r['workers']} | {r['config']} | {r['runs']}{' (' + str(r['failed']) + ' failed)' if r['failed'] else ''} | "
           f"{fmt(r['median_pages_per_second'])} | {fmt(r['min'])} - {fmt(r['max'])} | "
           f"{'1' if base else fmt(r['ratio_of_medians'], 3)} | {'1' if base else '**' + fmt(r['paired_ratio'], 3) + '**'} | "
           f"{'-' if base else fmt(r['paired_min'], 3) + ' - ' + fmt(r['paired_max'], 3)} | {fmt(r['cpu_ns_per_page'])} | "
           f"{'-' if base else fmt(r['cpu_per_page_paired'], 3)} | {fmt(r['tool_cpu_percent'], 1)} | {fmt(r['other_cpu_percent'], 1)} |")
    w_("")
def spread(r, key, digits):
    """median (min - max) in ms, or - when there is nothing."""
    if r[key + "_median_ns"] is None:
        return "-"
    return f"{fmt(r[key + '_median_ns'], digits, 1e6)} ({fmt(r[key + '_min_ns'], digits, 1e6)} - {fmt(r[key + '_max_ns'], digits, 1e6)})"


if "snapshot" in parts:
    w_("## Cost of one full snapshot")
    w_("")
    if meta.get("snap_agent_skip"):
        w_(f"- Agent snapshot: **NOT RUN**: {meta['snap_agent_skip']}")
        w_("")
    w_("Medians of the interleaved reads. /proc scan: `vigil_proc_scan`, one pass of opendir(/proc) and, for every pid, "
       "open + read + parse of /proc/PID/status (VmRSS, RssAnon, RssFile, RssShmem, VmHWM, VmSwap), as ps and top read "
       "memory. Snapshot: the agent's own `snapshot_ns` (the task iterator's read and the aggregation) from "
       "`vigil top --once -o json`. CLI round trip: that whole command as the script timed it (process start, gRPC, "
       "the snapshot, encoding every row as JSON), for context.")
    w_("")
    w_("| Extra processes (asked / alive) | In /proc | Processes the agent saw | /proc scan ms (min - max) | us per process | "
       "Snapshot ms (min - max) | us per task | **/proc scan / snapshot** | CLI round trip ms | /proc scan / round trip |")
    w_("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in snap_rows:
        asked = f"{r['extra_processes_requested']:,} / {r['extra_processes_alive']:,}"
        if r["hold_error"]:
            asked += f" ({r['hold_error']})"
        w_(f"| {asked} | {fmt(r['processes_in_proc'])} | {fmt(r['agent_tasks_seen'])} | "
           f"{spread(r, 'proc_scan', 2)} | {fmt(r['proc_scan_ns_per_process'], 1, 1e3)} | {spread(r, 'snapshot', 3)} | "
           f"{fmt(r['snapshot_ns_per_task'], 2, 1e3)} | **{fmt(r['scan_over_snapshot'], 1)}** | "
           f"{fmt(r['cli_round_trip_median_ms'], 1)} | {fmt(r['scan_over_cli_round_trip'], 2)} |")
    w_("")
    errs = [r for r in snap_rows if r["agent_error"]]
    for r in errs:
        w_(f"- {r['extra_processes_requested']:,} extra processes: {r['agent_error']}")
    if errs:
        w_("")
if runs:
    w_("## Every run")
    w_("")
    w_("| Round | Order | Workers | Config | Pages/s | CPU ns/page | Tool CPU % | Others % | Steal % | Waited s | Check |")
    w_("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in sorted(runs, key=lambda r: (r["round"], r["order"], r["workers"])):
        chk = ""
        if "bpftrace_saw_workers" in r:
            chk = f"map: {r['bpftrace_map_entries']} pids, workers {'in it' if r['bpftrace_saw_workers'] else 'MISSING'}"
        elif "top_refreshed" in r:
            chk = "top printed NOTHING"
            if r["top_refreshed"]:
                chk = f"top printed {r['top_bytes_during_run']:,} bytes"
                if r.get("top_refreshes_during_run"):
                    chk += f", {r['top_refreshes_during_run']} refreshes"
        if r.get("tool_alive_after") is False:
            chk += " TOOL DIED"
        res = fmt(r.get("pages_per_second")) if r.get("pages_per_second") else "error: " + str(r.get("error"))
        w_(f"| {r['round']} | {r['order']} | {r['workers']} | {r['config']} | {res} | {fmt(r.get('cpu_ns_per_page'))} | "
           f"{fmt(r.get('tool_cpu_percent'), 1)} | {fmt(r.get('other_cpu_percent'), 1)} | {fmt(r.get('steal_percent'), 1)} | "
           f"{r.get('quiet_wait_seconds', 0)} | {chk} |")
    w_("")
if notes:
    w_("## Notes")
    w_("")
    for n in notes:
        w_(f"- {n}")
    w_("")
open(out_md, "w").write("\n".join(L))
# Exit 3 when the agent's side could not be measured at all.
sys.exit(3 if any(t["result"] == "NOT RUN" for t in targets) else 0)
PY
mkdir -p "$RESULTS_DIR" || die "cannot create $RESULTS_DIR"
"$PYTHON" "$WORK/summarize.py" "$WORK" "$RESULTS_DIR/mem.json.tmp" "$RESULTS_DIR/mem.md.tmp"
rc=$?
((rc == 0 || rc == 3)) || die "could not write the summary"
mv "$RESULTS_DIR/mem.json.tmp" "$RESULTS_DIR/mem.json"
mv "$RESULTS_DIR/mem.md.tmp" "$RESULTS_DIR/mem.md"
log "wrote $RESULTS_DIR/mem.md and mem.json"
sed -n '/^## Targets/,/^## /p' "$RESULTS_DIR/mem.md" | sed '$d' >&2
if ((rc == 3)); then
  log "ERROR: a target could not be measured (NOT RUN above)${AGENT_SKIP:+: $AGENT_SKIP}"
  exit 1
fi
exit 0
