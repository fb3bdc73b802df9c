#!/usr/bin/env bash
# Exec-storm benchmark: what does observing every exec cost?
#
#   bench/run.sh [BUILD_DIR]        (BUILD_DIR defaults to "build"; `make bench` calls this)
#
# Runs bench/exec_storm.cpp (vigil_exec_storm: N fork+execve of /bin/true, waiting for each,
# from 1 and 2 parallel spawners) in four configurations, alternated round by round so that
# drift on a shared machine hits all of them alike:
#   baseline     nothing attached
#   agent        vigil-agent running, consuming and storing every event, no policy
#   agent+rules  the same agent with BENCH_RULES (1000) exec policy rules applied through
#                `vigil policy apply`, none of which matches the storm (the cost of evaluating them)
#   bpftrace     bpftrace printing pid and filename of sched:sched_process_exec to /dev/null
# and writes bench/results/exec_storm.{md,json}. Missed targets are reported (PASS/FAIL in the
# summary), never turned into a failing exit status. The script fails only when it cannot run.
#
# Environment:
#   BENCH_EXECS         execs per run, for every parallelism (default: calibrated so that a
#                       baseline run takes about BENCH_RUN_SECONDS at each parallelism)
#   BENCH_RUN_SECONDS   target length of one run for the calibration (default 4)
#   BENCH_ROUNDS        rounds of baseline/agent/agent+rules/bpftrace (default 5)
#   BENCH_PARALLEL      parallel spawner counts (default "1 2")
#   BENCH_CONFIGS       configurations to run (default "baseline agent agent+rules bpftrace")
#   BENCH_RULES         exec rules in the agent+rules policy (default 1000; at most 1024, the
#                       per-policy limit)
#   BENCH_METHOD        fork (default), vfork or posix_spawn; passed to vigil_exec_storm
#   BENCH_IDLE_SECONDS  length of the agent's idle CPU/RSS measurement (default 5)
#   BENCH_EVENT_RING_SIZE  if set, passed to the agent as --event-ring-size
#   BENCH_AGENT_ARGS    extra agent arguments (word-split)
#   BENCH_RESULTS_DIR   where to write results (default bench/results next to this script)
#   BENCH_READY_TIMEOUT seconds to wait for the agent to answer `vigil status` (default 20)
#   BENCH_BPF_STATS     1 (default): keep BPF run-time statistics on during the benchmark (through
#                       a BPF_ENABLE_STATS fd, so kernel.bpf_stats_enabled is left alone) to report
#                       the in-kernel run time of the tools' BPF programs; 0: off
#   BENCH_QUIET_PCT     before each run, wait until other processes use at most this % of one
#                       core (measured over 1 s; default 15) ...
#   BENCH_QUIET_MAX     ... but at most this many seconds per run (default 20; 0 disables it)
#   BENCH_QUIET_BUDGET  ... and at most this many seconds over the whole benchmark (default 150)
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
resolve_build_dir "${1:-build}"

EXECS=${BENCH_EXECS:-}
RUN_SECONDS=${BENCH_RUN_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-5}
PARALLEL=${BENCH_PARALLEL:-"1 2"}
CONFIGS=${BENCH_CONFIGS:-"baseline agent agent+rules bpftrace"}
RULES=${BENCH_RULES:-1000}
POLICY_NAME=bench-$RULES-rules
METHOD=${BENCH_METHOD:-fork}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-5}
EVENT_RING_SIZE=${BENCH_EVENT_RING_SIZE:-}
AGENT_EXTRA_ARGS=${BENCH_AGENT_ARGS:-}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$SCRIPT_DIR/results}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-20}
QUIET_PCT=${BENCH_QUIET_PCT:-15}
QUIET_MAX=${BENCH_QUIET_MAX:-20}
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-150}
QUIET_SPENT=0
BPF_STATS=${BENCH_BPF_STATS:-1}
STATS_PID=

STORM=$BUILD_DIR/bench/vigil_exec_storm
AGENT=$BUILD_DIR/agent/vigil-agent
CLI=$BUILD_DIR/cli/vigil
BPFTRACE_PROG='tracepoint:sched:sched_process_exec { printf("%d %s\n", pid, str(args->filename)); }'
TRACEFS=/sys/kernel/tracing
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
{ is_uint "$ROUNDS" && ((ROUNDS > 0)); } || die "BENCH_ROUNDS must be a positive integer"
[[ -z "$EXECS" ]] || { is_uint "$EXECS" && ((EXECS > 0)); } || die "BENCH_EXECS must be a positive integer"
is_uint "$IDLE_SECONDS" || die "BENCH_IDLE_SECONDS must be a non-negative integer"
is_uint "$QUIET_PCT" || die "BENCH_QUIET_PCT must be a non-negative integer"
is_uint "$QUIET_MAX" || die "BENCH_QUIET_MAX must be a non-negative integer"
is_uint "$QUIET_BUDGET" || die "BENCH_QUIET_BUDGET must be a non-negative integer"
{ is_uint "$RULES" && ((RULES > 0 && RULES <= 1024)); } || die "BENCH_RULES must be an integer from 1 to 1024"
for p in $PARALLEL; do { is_uint "$p" && ((p > 0)); } || die "bad BENCH_PARALLEL entry '$p'"; done
for c in $CONFIGS; do
  case "$c" in baseline | agent | agent+rules | bpftrace) ;; *) die "bad BENCH_CONFIGS entry '$c'" ;; esac
done
[[ " $CONFIGS " == *" baseline "* ]] || die "BENCH_CONFIGS must include baseline (ratios are against it)"

((EUID == 0)) || die "must run as root (BPF, tracefs)"
# Resolve the interpreter once: version-manager shims cost a few processes per call.
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || die "python3 is required"

# ---------------------------------------------------------------------------------------------
# State and cleanup. Everything started here is recorded and stopped on any exit.

WORK=$(mktemp -d /tmp/vigil-bench.XXXXXX) || die "mktemp failed"
SOCK=$WORK/vigil.sock
RUNS=$WORK/runs.jsonl
HELPER=$WORK/helper.py
AGENT_PID=
BPFTRACE_PID=
STORM_PID=
MOUNTED_TRACEFS=0
START_EPOCH=$EPOCHREALTIME


stop_agent() {
  [[ -n "$AGENT_PID" ]] || return 0
  stop_pid "$AGENT_PID" TERM 15
  AGENT_PID=
  rm -f "$SOCK"
}

stop_bpftrace() {
  [[ -n "$BPFTRACE_PID" ]] || return 0
  stop_pid "$BPFTRACE_PID" INT 10
  BPFTRACE_PID=
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n "$STORM_PID" ]] && stop_pid "$STORM_PID" TERM 5 # its spawners die with it
  stop_agent
  stop_bpftrace
  [[ -n "$STATS_PID" ]] && stop_pid "$STATS_PID" TERM 5
  if ((MOUNTED_TRACEFS)); then
    umount "$TRACEFS" 2>/dev/null || log "warning: could not unmount $TRACEFS"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap_exit cleanup

# ---------------------------------------------------------------------------------------------
# Python helper: status parsing, per-run records, the summary. Written to the work directory so
# the whole benchmark stays one script.

cat >"$HELPER" <<'PY'
import json, os, statistics, subprocess, sys


def load(path):
    with open(path) as f:
        return json.load(f)


def as_int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def status_counters(st):
    """Counters of a GetStatusResponse in protobuf JSON (uint64 as strings, zeros omitted)."""
    c = {"seen": {}, "lost_kernel": {}, "malformed": {}, "kernel_stats": {}}
    for e in st.get("events") or []:
        t = str(e.get("type", "EVENT_TYPE_UNSPECIFIED"))
        c["seen"][t] = as_int(e.get("seen"))
        c["lost_kernel"][t] = as_int(e.get("lostKernel", e.get("lost_kernel")))
        c["malformed"][t] = as_int(e.get("malformed"))
    for k in st.get("kernelStats", st.get("kernel_stats")) or []:
        c["kernel_stats"][str(k.get("name"))] = as_int(k.get("value"))
    c["client_events_dropped"] = as_int(st.get("clientEventsDropped", st.get("client_events_dropped")))
    c["process_table_evictions"] = as_int(st.get("processTableEvictions", st.get("process_table_evictions")))
    return c


def delta_map(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in sorted(set(a) | set(b)) if b.get(k, 0) - a.get(k, 0)}


def agent_delta(before, after, expected_execs):
    a, b = status_counters(before), status_counters(after)
    seen = delta_map(a["seen"], b["seen"])
    lost_events = sum(delta_map(a["lost_kernel"], b["lost_kernel"]).values())
    kstats = delta_map(a["kernel_stats"], b["kernel_stats"])
    lost_kstats = sum(v for k, v in kstats.items() if "lost" in k)
    # Records that left the kernel but found the agent's own queue full (agent_queue_dropped).
    agent_dropped = sum(v for k, v in kstats.items() if "drop" in k)
    malformed = sum(delta_map(a["malformed"], b["malformed"]).values())
    client = b["client_events_dropped"] - a["client_events_dropped"]
    # The per-type lostKernel counters and the *_lost_* kernel stats describe the same losses;
    # take the larger rather than the sum.
    lost_kernel = max(lost_events, lost_kstats)
    seen_exec = seen.get("EVENT_TYPE_EXEC", seen.get("1", 0))
    return {
        "seen": seen,
        "seen_exec": seen_exec,
        "expected_execs": expected_execs,
        # Execs of the storm that the agent neither saw nor counted as lost. Other programs
        # exec'ing meanwhile can only hide a shortfall, never invent one.
        "unaccounted_execs": max(0, expected_execs - seen_exec - lost_kernel - agent_dropped - malformed),
        "lost_kernel": lost_kernel,
        "agent_queue_dropped": agent_dropped,
        "malformed": malformed,
        "client_events_dropped": client,
        "lost_total": lost_kernel + agent_dropped + malformed + client,
        "kernel_stats": kstats,
        "process_table_evictions": b["process_table_evictions"] - a["process_table_evictions"],
    }


def proc_usage(before, after, wall, clk_tck):
    """before/after: 'ticks rss_kb hwm_kb' strings from /proc/<pid>/{stat,status}."""
    tb, _, _ = (int(x) for x in before.split())
    ta, rss, hwm = (int(x) for x in after.split())
    cpu_s = (ta - tb) / clk_tck
    return {
        "cpu_seconds": round(cpu_s, 3),
        "wall_seconds": round(wall, 3),
        "cpu_percent_of_one_core": round(100.0 * cpu_s / wall, 2) if wall > 0 else None,
        "rss_kb": rss,
        "hwm_kb": hwm,
    }


def cmd_status_ok(path):
    st = load(path)
    if not isinstance(st, dict):
        sys.exit(1)


def cmd_record(args):
    # args: key=value pairs
    kv = dict(a.split("=", 1) for a in args)
    rec = {
        "round": int(kv["round"]),
        "config": kv["config"],
        "parallel": int(kv["parallel"]),
        "order": int(kv["order"]),
    }
    storm = load(kv["storm"])
    rec["storm"] = storm
    rec["execs_per_second"] = storm.get("execs_per_second")
    rec["failed"] = storm.get("failed", 0)
    clk = int(kv["clk_tck"])
    wall = float(kv["wall"])
    if kv.get("proc_before") and kv.get("proc_after"):
        rec["tool_usage"] = proc_usage(kv["proc_before"], kv["proc_after"], wall, clk)
    if kv.get("cpu_before") and kv.get("cpu_after"):
        (b0, s0), (b1, s1) = ([int(x) for x in kv[k].split()] for k in ("cpu_before", "cpu_after"))
        busy = (b1 - b0) / clk
        tool = rec.get("tool_usage", {}).get("cpu_seconds", 0.0)
        cpu = storm.get("cpu_seconds") or {}
        storm_cpu = float(cpu.get("user", 0)) + float(cpu.get("system", 0))
        # The warm-up is inside the wall time but outside the storm's timed CPU figure.
        warm = float(storm.get("cpu_us_per_exec", 0)) * int(storm.get("warmup_per_spawner", 0)) * int(storm.get("parallel", 1)) / 1e6
        other = max(0.0, busy - tool - storm_cpu - warm)
        rec["other_cpu_percent"] = round(100.0 * other / wall, 1) if wall > 0 else None
        rec["steal_percent"] = round(100.0 * (s1 - s0) / clk / wall, 1) if wall > 0 else None
    if kv.get("quiet_waited", "") != "":
        rec["quiet_wait_seconds"] = int(kv["quiet_waited"])
    if kv.get("other_before_pct", "") != "":
        rec["other_cpu_percent_before"] = int(kv["other_before_pct"])
    if kv.get("progs_before") and kv.get("progs_after"):
        try:
            rec["bpf_programs"] = prog_delta(load(kv["progs_before"]), load(kv["progs_after"]), int(storm.get("ok", 0)))
        except (OSError, ValueError):
            pass
    if kv.get("foreign_progs", "") != "":
        rec["foreign_bpf_programs"] = int(kv["foreign_progs"])
    if kv.get("status_before") and kv.get("status_after"):
        expected = int(storm.get("execs", 0)) + int(storm.get("parallel", 1)) * int(storm.get("warmup_per_spawner", 0))
        try:
            rec["agent"] = agent_delta(load(kv["status_before"]), load(kv["status_after"]), expected)
        except (OSError, ValueError) as e:
            rec["agent_error"] = "status unreadable: %s" % e
    with open(kv["out"], "a") as f:
        f.write(json.dumps(rec) + "\n")


def cmd_idle(args):
    kv = dict(a.split("=", 1) for a in args)
    u = proc_usage(kv["proc_before"], kv["proc_after"], float(kv["wall"]), int(kv["clk_tck"]))
    print(json.dumps(u))


def prog_owners():
    """prog id -> pids holding it through a bpf-prog or bpf_link fd, from /proc/*/fdinfo.
    (bpftool can report this too, but only when built with its pid iterator.)"""
    owners = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fddir = "/proc/%s/fd" % pid
        try:
            fds = os.listdir(fddir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("%s/%s" % (fddir, fd))
                if target not in ("anon_inode:bpf-prog", "anon_inode:bpf_link"):
                    continue
                with open("/proc/%s/fdinfo/%s" % (pid, fd)) as f:
                    for line in f:
                        if line.startswith("prog_id:"):
                            owners.setdefault(int(line.split()[1]), set()).add(int(pid))
            except (OSError, ValueError):
                continue
    return owners


def bpf_progs():
    """Loaded BPF programs as bpftool lists them, each with "owners": the pids holding it."""
    try:
        out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, timeout=20)
        progs = json.loads(out.stdout or "[]")
    except Exception:
        return None
    owners = prog_owners()
    for p in progs:
        p["owners"] = sorted(owners.get(p.get("id"), ()))
    return progs


def cmd_progs(path):
    progs = bpf_progs()
    with open(path, "w") as f:
        json.dump(progs, f)


def cmd_foreign(our_pid):
    """Tracing-type BPF programs loaded by anyone but our tool: they would slow every config."""
    ours = int(our_pid) if our_pid else None
    progs = bpf_progs() or []
    n = 0
    for p in progs:
        if p.get("type") not in ("tracing", "tracepoint", "raw_tracepoint", "kprobe", "perf_event"):
            continue
        if ours is not None and ours in p["owners"]:
            continue
        n += 1
    print(n)


def cmd_hold_stats():
    """Turns on BPF run-time statistics with BPF_ENABLE_STATS and holds the fd until killed."""
    import ctypes, signal
    nr = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "s390x": 351, "ppc64le": 361}.get(os.uname().machine)
    if nr is None:
        sys.exit("no bpf(2) syscall number known for " + os.uname().machine)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG: go when the script goes
    if os.getppid() == 1:
        sys.exit(1)
    attr = ctypes.create_string_buffer(64)  # enable_stats.type = BPF_STATS_RUN_TIME (0)
    fd = libc.syscall(nr, 32, attr, ctypes.sizeof(attr))  # BPF_ENABLE_STATS
    if fd < 0:
        sys.exit("BPF_ENABLE_STATS failed: " + os.strerror(ctypes.get_errno()))
    print("ok", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def cmd_progstats(pid, path):
    """run_cnt / run_time_ns of the programs a pid holds (counted while statistics are on)."""
    pid = int(pid)
    out = {}
    for p in bpf_progs() or []:
        if pid in p["owners"]:
            out[str(p["id"])] = {"name": p.get("name"), "run_cnt": p.get("run_cnt", 0), "run_time_ns": p.get("run_time_ns", 0)}
    with open(path, "w") as f:
        json.dump(out, f)


def prog_delta(before, after, execs):
    """Per program: invocations, average ns per invocation, ns per storm exec."""
    progs = []
    for pid, a in sorted(after.items()):
        b = before.get(pid, {})
        cnt = a.get("run_cnt", 0) - b.get("run_cnt", 0)
        ns = a.get("run_time_ns", 0) - b.get("run_time_ns", 0)
        progs.append({
            "name": a.get("name"),
            "run_cnt": cnt,
            "run_time_ns": ns,
            "avg_ns": round(ns / cnt, 1) if cnt else None,
            "runs_per_exec": round(cnt / execs, 3) if execs else None,
            "ns_per_exec": round(ns / execs, 1) if execs else None,
        })
    return progs


def cmd_leftover(before_path, pids_csv):
    """BPF programs loaded since the start that nobody alive owns, or that our tools own."""
    ours = {int(p) for p in pids_csv.split(",") if p}
    before = load(before_path)
    now = bpf_progs()
    if before is None or now is None:
        print(json.dumps({"checked": False}))
        return
    old = {p.get("id") for p in before}
    left = []
    for p in now:
        if p.get("id") in old:
            continue
        owners = p["owners"]
        if not owners or any(o in ours for o in owners):
            left.append({"id": p.get("id"), "name": p.get("name"), "type": p.get("type"), "owners": owners})
    print(json.dumps({"checked": True, "programs": left}))


def cmd_policy_yaml(n, path, name, storm_binary):
    """Writes one Policy document with n exec rules that the storm never matches, and prints how
    many rules of each kind it holds (JSON). Every kind of match list is used: prefixes under a
    directory that does not exist, uids nobody has (4000000000 - i), combinations of the two,
    file identities (binaries, parentBinaries) of /bin/false, which the storm never runs, and
    the cgroup v2 path of this very benchmark (so the cgroup lookup finds rules); those are
    AND'ed with a uid or prefix that cannot match, except a handful of audit-mode rules (audit
    mode: a run of /bin/false elsewhere is reported, never killed)."""
    n = int(n)
    other = "/bin/false"
    try:
        # On a busybox system /bin/false may be the very file the storm runs: no file rules then.
        if os.path.samefile(other, storm_binary):
            other = None
    except OSError:
        other = None
    cgroup = None
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    cgroup = line[3:].strip() or None
    except OSError:
        pass
    audit_from = n - 5 if (other and n >= 50) else n
    kinds = {}
    L = ["# Generated by bench/run.sh: %d exec rules, none of which matches the storm (%s run by root)." % (n, storm_binary),
         "apiVersion: vigil.dev/v1alpha1", "kind: Policy", "metadata:", "  name: " + name,
         "  labels:", "    purpose: benchmark", "spec:", "  mode: enforce", "  exec:"]
    for i in range(n):
        prefix = '["/nonexistent-vigil-bench/%d/"]' % i
        uid = "[%d]" % (4000000000 - i)
        mode = None
        j = i % 10
        if i >= audit_from:
            mode = "audit"
            if i % 2:
                kind, match = "parentBinaries (audit mode)", [("parentBinaries", "[%s]" % other)]
            else:
                kind, match = "binaries (audit mode)", [("binaries", "[%s]" % other)]
        elif j < 3 or (j in (7, 8) and not other):
            kind, match = "pathPrefixes", [("pathPrefixes", prefix)]
        elif j < 5:
            kind, match = "uids", [("uids", uid)]
        elif j < 7 or (j == 9 and not cgroup):
            kind, match = "pathPrefixes+uids", [("pathPrefixes", prefix), ("uids", uid)]
        elif j == 7:
            kind, match = "binaries+uids", [("binaries", "[%s]" % other), ("uids", uid)]
        elif j == 8:
            kind, match = "parentBinaries+pathPrefixes", [("parentBinaries", "[%s]" % other), ("pathPrefixes", prefix)]
        else:
            # json.dumps: a double-quoted string is valid YAML too, whatever the path holds.
            kind, match = "cgroupPathPrefixes+uids", [("cgroupPathPrefixes", "[%s]" % json.dumps(cgroup)), ("uids", uid)]
        kinds[kind] = kinds.get(kind, 0) + 1
        L.append("    - name: r%d" % i)
        L.append("      action: kill")
        if mode:
            L.append("      mode: " + mode)
        L.append("      match:")
        for field, value in match:
            L.append("        %s: %s" % (field, value))
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")
    print(json.dumps(kinds))


def policy_list(path):
    """(policies, enforcement) from `vigil policy list -o json`."""
    d = load(path)
    return d.get("policies") or [], d.get("enforcement") or ""


def cmd_policy_check(path, name, n):
    """Checks that policy `name` is enforcing with n rules; prints a JSON summary, exits 1 with
    a message otherwise. Also counts the rules of other policies (there should be none)."""
    pols, enforcement = policy_list(path)
    mine = [p for p in pols if p.get("name") == name]
    others = sum(len(p.get("rules") or []) for p in pols if p.get("name") != name)
    if not mine:
        sys.exit("policy %s not in `vigil policy list` (%d other policies)" % (name, len(pols)))
    p = mine[0]
    rules = p.get("rules") or []
    if p.get("state") != "enforcing" or len(rules) != int(n):
        sys.exit("policy %s: state %r with %d rules, expected enforcing with %s%s" % (
            name, p.get("state"), len(rules), n, (": " + p["error"]) if p.get("error") else ""))
    print(json.dumps({"rules": len(rules), "state": p.get("state"), "mode": p.get("mode"), "source": p.get("source"),
                      "hits": sum(as_int(r.get("hits")) for r in rules), "other_rules": others,
                      "enforcement": enforcement}))


def cmd_policy_count(path):
    """Rules of all policies in `vigil policy list -o json`."""
    pols, _ = policy_list(path)
    print(sum(len(p.get("rules") or []) for p in pols))


def median(xs):
    return statistics.median(xs) if xs else None


def pct(x):
    return "n/a" if x is None else "%.1f%%" % x


def fmt_rate(x):
    return "n/a" if x is None else "%.0f" % x


def signed_pct(x):
    return "n/a" if x is None else "%+.1f%%" % x


def rules_desc(rm):
    """Header line for the agent+rules configuration."""
    if not rm or not rm.get("rules"):
        return "not run"
    kinds = ", ".join("%d %s" % (v, k) for k, v in (rm.get("kinds") or {}).items())
    d = "%s exec rules in one policy `%s` (spec.mode enforce, action kill; %s), none matching the storm" % (
        rm["rules"], rm.get("policy_name"), kinds or "n/a")
    rounds = rm.get("applied_rounds") or []
    if rounds:
        ms = sorted(x["apply_ms"] for x in rounds)
        after = [x["after"] for x in rounds if x.get("after")]
        d += "; applied with `vigil policy apply` after each start-up (median %d ms for the call)" % ms[len(ms) // 2]
        if after:
            # The first word ("sigkill" or "lsm"); the whole explanation is in the JSON.
            d += ", state %s, kill mechanism %s" % (after[0].get("state"), (after[0].get("enforcement") or "n/a").split()[0])
    if rm.get("skipped"):
        d += ". **Not run**: %s" % rm["skipped"]
    return d


def rules_target_lines(tg, max_overhead):
    n = tg.get("rules") or "n/a"
    head = "- **Rules overhead <= %g%% (agent+rules vs agent, %s non-matching rules): %s**" % (max_overhead, n, tg["result"])
    if tg["result"] in ("NOT RUN", "NOT MEASURED"):
        out = [head + " (%s)" % tg.get("reason")]
        if tg["result"] == "NOT MEASURED":
            out.append("  - Against the baseline: %s" % ", ".join(
                "P=%s: %s" % (c["parallel"], pct(c.get("overhead_vs_baseline_pct"))) for c in tg["by_parallel"]))
        return out
    cs = tg["by_parallel"]
    out = [head + " (%s; paired %s)" % (
        ", ".join("P=%s: %s" % (c["parallel"], pct(c.get("overhead_vs_agent_pct"))) for c in cs),
        ", ".join("P=%s: %s" % (c["parallel"], pct(c.get("paired_overhead_vs_agent_pct"))) for c in cs))]
    out.append("  - Against the baseline (no agent): %s (the agent without policy: %s)." % (
        ", ".join("P=%s: %s" % (c["parallel"], pct(c.get("overhead_vs_baseline_pct"))) for c in cs),
        ", ".join("P=%s: %s" % (c["parallel"], pct(c.get("agent_overhead_vs_baseline_pct"))) for c in cs)))
    kern = [c for c in cs if c.get("vigil_exec_extra_ns_per_exec") is not None]
    if kern:
        out.append("  - In the kernel the rules cost %s per exec in vigil_exec (%s), %s of the baseline's CPU per exec." % (
            ", ".join("P=%s: %+.0f ns" % (c["parallel"], c["vigil_exec_extra_ns_per_exec"]) for c in kern),
            ", ".join("P=%s: %.0f -> %.0f ns" % (c["parallel"], c["vigil_exec_ns_per_exec_agent"], c["vigil_exec_ns_per_exec_rules"]) for c in kern),
            ", ".join("P=%s: %s" % (c["parallel"], "n/a" if c.get("vigil_exec_extra_pct_of_baseline_cpu_per_exec") is None
                                    else "%+.2f%%" % c["vigil_exec_extra_pct_of_baseline_cpu_per_exec"]) for c in kern)))
    extra = []
    if tg.get("lost_all_runs") is not None:
        extra.append("%s events lost or unaccounted over all agent+rules runs" % tg["lost_all_runs"])
    if tg.get("rule_hits_total") is not None:
        extra.append("%s rule hits" % tg["rule_hits_total"])
    failed = sum(c.get("failed_runs", 0) for c in cs)
    if failed:
        extra.append("**%d run(s) had failed execs: a rule may have matched the storm**" % failed)
    if extra:
        out.append("  - " + "; ".join(extra) + ".")
    if tg.get("noisy"):
        out.append("  - Caution: the agent or agent+rules runs alone spread by more than twice the target (%s): a "
                   "difference of a few percent is within this machine's noise; the in-kernel cost above is the "
                   "steadier measure." % ", ".join("P=%s: %s / %s" % (c["parallel"], pct(c.get("agent_spread_pct")), pct(c.get("rules_spread_pct"))) for c in cs))
    return out


def rules_table_lines(cs, rm):
    L = ["### agent+rules against agent", "",
         "The same agent with and without the %s non-matching rules, in the same rounds. Overhead = 1 - median(agent+rules) / "
         "median(agent); paired = the median of per-round ratios. vigil_exec is the program that evaluates the rules "
         "(ns per exec, median); its extra time is also given as a share of the baseline's spawner CPU per exec, an "
         "estimate of the rules' overhead that the machine's noise blurs much less than the exec rate. The last column "
         "sums all the agent's programs; the rules run only in vigil_exec, so the rest of that difference is noise." % rm.get("rules", "n/a"), "",
         "| Spawners | agent execs/s | agent+rules execs/s | Overhead vs agent | Paired | Overhead vs baseline | "
         "Spawner CPU us/exec agent / +rules | vigil_exec ns/exec agent / +rules | Extra | Share of baseline CPU/exec | All programs ns/exec agent / +rules |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    f1 = lambda x: "n/a" if x is None else "%.1f" % x
    f0 = lambda x: "n/a" if x is None else "%.0f" % x
    for c in cs:
        L.append("| %d | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s | %s / %s |" % (
            c["parallel"], fmt_rate(c.get("agent_median_execs_per_second")), fmt_rate(c.get("rules_median_execs_per_second")),
            pct(c.get("overhead_vs_agent_pct")), pct(c.get("paired_overhead_vs_agent_pct")), pct(c.get("overhead_vs_baseline_pct")),
            f1(c.get("cpu_us_per_exec_agent")), f1(c.get("cpu_us_per_exec_rules")),
            f0(c.get("vigil_exec_ns_per_exec_agent")), f0(c.get("vigil_exec_ns_per_exec_rules")),
            "n/a" if c.get("vigil_exec_extra_ns_per_exec") is None else "%+.0f ns" % c["vigil_exec_extra_ns_per_exec"],
            "n/a" if c.get("vigil_exec_extra_pct_of_baseline_cpu_per_exec") is None else "%+.3f%%" % c["vigil_exec_extra_pct_of_baseline_cpu_per_exec"],
            f0(c.get("bpf_ns_per_exec_agent")), f0(c.get("bpf_ns_per_exec_rules"))))
    L.append("")
    return L


def cmd_summarize(args):
    kv = dict(a.split("=", 1) for a in args)
    meta = load(kv["meta"])
    runs = []
    if os.path.exists(kv["runs"]):
        with open(kv["runs"]) as f:
            runs = [json.loads(l) for l in f if l.strip()]
    idle = load(kv["idle"]) if kv.get("idle") and os.path.exists(kv["idle"]) else None
    idle_rules = load(kv["idle_rules"]) if kv.get("idle_rules") and os.path.exists(kv["idle_rules"]) else None
    rules_meta = load(kv["rules"]) if kv.get("rules") and os.path.exists(kv["rules"]) else {}
    leftover = load(kv["leftover"]) if kv.get("leftover") and os.path.exists(kv["leftover"]) else None
    max_overhead = float(kv.get("max_overhead_pct", "3"))

    parallels = sorted({r["parallel"] for r in runs})
    configs = [c for c in ("baseline", "agent", "agent+rules", "bpftrace") if any(r["config"] == c for r in runs)]
    by = {}
    for r in runs:
        by.setdefault((r["parallel"], r["config"]), []).append(r)

    table = []
    for p in parallels:
        base = by.get((p, "baseline"), [])
        base_med = median([r["execs_per_second"] for r in base if r["failed"] == 0])
        base_by_round = {r["round"]: r["execs_per_second"] for r in base}
        for c in configs:
            rs = [r for r in by.get((p, c), []) if r["failed"] == 0]
            rates = [r["execs_per_second"] for r in rs]
            row = {"parallel": p, "config": c, "runs": len(rates)}
            if rates:
                med = median(rates)
                row.update(
                    median_execs_per_second=round(med, 1),
                    min_execs_per_second=round(min(rates), 1),
                    max_execs_per_second=round(max(rates), 1),
                    spread_pct=round(100.0 * (max(rates) - min(rates)) / med, 1) if med else None,
                    rates=[round(x, 1) for x in rates],
                )
                if base_med:
                    ratio = med / base_med
                    row["ratio_to_baseline"] = round(ratio, 4)
                    row["overhead_pct"] = round(100.0 * (1 - ratio), 2)
                    paired = [r["execs_per_second"] / base_by_round[r["round"]] for r in rs if base_by_round.get(r["round"])]
                    if paired:
                        row["paired_ratio_median"] = round(median(paired), 4)
                        row["paired_overhead_pct"] = round(100.0 * (1 - median(paired)), 2)
                cpe = [r["storm"].get("cpu_us_per_exec") for r in rs if r["storm"].get("cpu_us_per_exec")]
                if cpe:
                    row["cpu_us_per_exec_median"] = round(median(cpe), 1)
                    base_cpe = [r["storm"].get("cpu_us_per_exec") for r in base if r["failed"] == 0 and r["storm"].get("cpu_us_per_exec")]
                    if base_cpe:
                        row["cpu_per_exec_vs_baseline_pct"] = round(100.0 * (median(cpe) / median(base_cpe) - 1), 2)
                usage = [r["tool_usage"] for r in rs if "tool_usage" in r]
                if usage:
                    cpus = [u["cpu_percent_of_one_core"] for u in usage if u["cpu_percent_of_one_core"] is not None]
                    row["tool_cpu_percent_median"] = round(median(cpus), 1) if cpus else None
                    row["tool_cpu_percent_max"] = round(max(cpus), 1) if cpus else None
                    row["tool_rss_kb_max"] = max(u["rss_kb"] for u in usage)
                    row["tool_hwm_kb_max"] = max(u["hwm_kb"] for u in usage)
                bp = [r["bpf_programs"] for r in rs if any(x["run_cnt"] > 0 for x in r.get("bpf_programs") or [])]
                if bp:
                    per = {}
                    for progs in bp:
                        for pr in progs:
                            if pr["run_cnt"] > 0:
                                per.setdefault(pr["name"], []).append(pr)
                    row["bpf_programs"] = []
                    for name, lst in sorted(per.items()):
                        avg = [x["avg_ns"] for x in lst if x["avg_ns"] is not None]
                        row["bpf_programs"].append({
                            "name": name,
                            "avg_ns_median": round(median(avg), 1) if avg else None,
                            "runs_per_exec_median": round(median([x["runs_per_exec"] for x in lst if x.get("runs_per_exec") is not None]), 2),
                            "ns_per_exec_median": round(median([x["ns_per_exec"] for x in lst if x["ns_per_exec"] is not None]), 1),
                        })
                    totals = [sum(x["ns_per_exec"] or 0 for x in progs) for progs in bp]
                    row["bpf_ns_per_exec_median"] = round(median(totals), 1)
                ag = [r["agent"] for r in rs if "agent" in r]
                if ag:
                    row["lost_total"] = sum(a["lost_total"] for a in ag)
                    row["lost_kernel"] = sum(a["lost_kernel"] for a in ag)
                    row["agent_queue_dropped"] = sum(a.get("agent_queue_dropped", 0) for a in ag)
                    row["malformed"] = sum(a["malformed"] for a in ag)
                    row["client_events_dropped"] = sum(a["client_events_dropped"] for a in ag)
                    row["unaccounted_execs"] = sum(a["unaccounted_execs"] for a in ag)
                    row["seen_exec"] = sum(a["seen_exec"] for a in ag)
                    row["expected_execs"] = sum(a["expected_execs"] for a in ag)
            table.append(row)

    failed_runs = [r for r in runs if r["failed"]]
    foreign_runs = [r for r in runs if r.get("foreign_bpf_programs")]
    busy_threshold = float(kv.get("busy_pct", "15"))
    busy_runs = [r for r in runs if (r.get("other_cpu_percent") or 0) > busy_threshold]
    agent_rows = [t for t in table if t["config"] == "agent" and t["runs"]]
    targets = {}
    skipped = meta.get("agent_skipped")
    if agent_rows:
        over = {t["parallel"]: t.get("overhead_pct") for t in agent_rows}
        ok = all(v is not None and v <= max_overhead for v in over.values())
        # The verdict means little when the baseline itself moves by more than the target.
        spread = {t["parallel"]: t.get("spread_pct") for t in table if t["config"] == "baseline" and t["runs"]}
        noisy = {p: v for p, v in spread.items() if v is not None and v > 2 * max_overhead}
        targets["agent_overhead"] = {
            "target": "agent overhead <= %g%% of the exec rate at every parallelism" % max_overhead,
            "overhead_pct_by_parallel": over,
            "paired_overhead_pct_by_parallel": {t["parallel"]: t.get("paired_overhead_pct") for t in agent_rows},
            "baseline_spread_pct_by_parallel": spread,
            "noisy": bool(noisy),
            "result": "PASS" if ok else "FAIL",
        }
        top = max(agent_rows, key=lambda t: t["median_execs_per_second"])
        top_runs = [r for r in by.get((top["parallel"], "agent"), []) if "agent" in r]
        lost_top = sum(r["agent"]["lost_total"] + r["agent"]["unaccounted_execs"] for r in top_runs)
        lost_all = sum(t.get("lost_total", 0) + t.get("unaccounted_execs", 0) for t in agent_rows)
        peak = max((r["execs_per_second"] for r in top_runs), default=None)
        targets["zero_lost"] = {
            "target": "zero lost events at the highest exec rate reached",
            "parallel": top["parallel"],
            "median_execs_per_second": top["median_execs_per_second"],
            "peak_execs_per_second": peak,
            "runs_with_status": len(top_runs),
            "lost_at_highest_rate": lost_top,
            "lost_all_agent_runs": lost_all,
            "result": "PASS" if top_runs and lost_top == 0 else ("FAIL" if top_runs else "NOT MEASURED"),
        }
    else:
        why = skipped or "no agent runs"
        targets["agent_overhead"] = {"result": "NOT RUN", "reason": why}
        targets["zero_lost"] = {"result": "NOT RUN", "reason": why}

    # agent+rules against agent (the cost of the rules) and against the baseline.
    rules_rows = [t for t in table if t["config"] == "agent+rules" and t["runs"]]
    rules_cmp = []
    if rules_rows:
        agent_by_p = {t["parallel"]: t for t in agent_rows}
        base_by_p = {t["parallel"]: t for t in table if t["config"] == "baseline" and t["runs"]}

        def prog_ns(row, name):
            for pr in (row or {}).get("bpf_programs") or []:
                if pr["name"] == name:
                    return pr
            return None

        for t in rules_rows:
            p = t["parallel"]
            a, b = agent_by_p.get(p), base_by_p.get(p)
            c = {
                "parallel": p,
                "rules_median_execs_per_second": t["median_execs_per_second"],
                "overhead_vs_baseline_pct": t.get("overhead_pct"),
                "paired_overhead_vs_baseline_pct": t.get("paired_overhead_pct"),
                "rules_spread_pct": t.get("spread_pct"),
                "cpu_us_per_exec_rules": t.get("cpu_us_per_exec_median"),
            }
            if a:
                ratio = t["median_execs_per_second"] / a["median_execs_per_second"]
                c.update(
                    agent_median_execs_per_second=a["median_execs_per_second"],
                    agent_spread_pct=a.get("spread_pct"),
                    ratio_to_agent=round(ratio, 4),
                    overhead_vs_agent_pct=round(100.0 * (1 - ratio), 2),
                    cpu_us_per_exec_agent=a.get("cpu_us_per_exec_median"),
                    agent_overhead_vs_baseline_pct=a.get("overhead_pct"),
                )
                agent_by_round = {r["round"]: r["execs_per_second"] for r in by.get((p, "agent"), []) if r["failed"] == 0}
                paired = [r["execs_per_second"] / agent_by_round[r["round"]] for r in by.get((p, "agent+rules"), [])
                          if r["failed"] == 0 and agent_by_round.get(r["round"])]
                if paired:
                    c["paired_overhead_vs_agent_pct"] = round(100.0 * (1 - median(paired)), 2)
            # In-kernel: the rules are evaluated inside vigil_exec.
            ex_a, ex_r = prog_ns(a, "vigil_exec"), prog_ns(t, "vigil_exec")
            if ex_r:
                c["vigil_exec_ns_per_exec_rules"] = ex_r["ns_per_exec_median"]
                c["vigil_exec_ns_per_run_rules"] = ex_r["avg_ns_median"]
            if ex_a:
                c["vigil_exec_ns_per_exec_agent"] = ex_a["ns_per_exec_median"]
                c["vigil_exec_ns_per_run_agent"] = ex_a["avg_ns_median"]
            if ex_a and ex_r:
                extra = ex_r["ns_per_exec_median"] - ex_a["ns_per_exec_median"]
                c["vigil_exec_extra_ns_per_exec"] = round(extra, 1)
                if b and b.get("cpu_us_per_exec_median"):
                    # The extra in-kernel time against what one exec costs without any tool: an
                    # estimate of the rules' overhead that the machine's noise blurs much less.
                    c["vigil_exec_extra_pct_of_baseline_cpu_per_exec"] = round(100.0 * extra / (1000.0 * b["cpu_us_per_exec_median"]), 3)
            if a and a.get("bpf_ns_per_exec_median") is not None and t.get("bpf_ns_per_exec_median") is not None:
                # All programs: the rules run only in vigil_exec, so the rest of this is noise.
                c["bpf_ns_per_exec_agent"] = a["bpf_ns_per_exec_median"]
                c["bpf_ns_per_exec_rules"] = t["bpf_ns_per_exec_median"]
                c["bpf_extra_ns_per_exec"] = round(t["bpf_ns_per_exec_median"] - a["bpf_ns_per_exec_median"], 1)
            c["failed_runs"] = sum(1 for r in by.get((p, "agent+rules"), []) if r["failed"])
            rules_cmp.append(c)
    if rules_rows and agent_rows:
        over = {c["parallel"]: c.get("overhead_vs_agent_pct") for c in rules_cmp}
        ok = all(v is not None and v <= max_overhead for v in over.values())
        noisy = any((c.get(k) or 0) > 2 * max_overhead for c in rules_cmp for k in ("agent_spread_pct", "rules_spread_pct"))
        result = "PASS" if ok else "FAIL"
    elif rules_rows:
        result = "NOT MEASURED"
        noisy = False
    else:
        result = "NOT RUN"
        noisy = False
    targets["rules_overhead"] = {
        "target": "agent with %s non-matching exec rules: overhead <= %g%% of the exec rate against the agent "
                  "without policy, at every parallelism" % (rules_meta.get("rules", "n/a"), max_overhead),
        "rules": rules_meta.get("rules"),
        "result": result,
        "noisy": noisy,
        "by_parallel": rules_cmp,
    }
    if result == "NOT RUN":
        targets["rules_overhead"]["reason"] = rules_meta.get("skipped") or skipped or "no agent+rules runs"
    elif result == "NOT MEASURED":
        targets["rules_overhead"]["reason"] = "no agent runs to compare with"
    rr = [x for x in (rules_meta.get("applied_rounds") or [])]
    rules_lost = sum(t.get("lost_total", 0) + t.get("unaccounted_execs", 0) for t in rules_rows)
    targets["rules_overhead"]["lost_all_runs"] = rules_lost if rules_rows else None
    hits = [x["after"]["hits"] for x in rr if x.get("after")]
    targets["rules_overhead"]["rule_hits_total"] = sum(hits) if hits else None

    storm_usage = {}
    for t in agent_rows:
        storm_usage[str(t["parallel"])] = {
            k: t.get(k) for k in ("tool_cpu_percent_median", "tool_cpu_percent_max", "tool_rss_kb_max", "tool_hwm_kb_max")
        }
    rules_storm_usage = {}
    for t in rules_rows:
        rules_storm_usage[str(t["parallel"])] = {
            k: t.get(k) for k in ("tool_cpu_percent_median", "tool_cpu_percent_max", "tool_rss_kb_max", "tool_hwm_kb_max")
        }

    result = {
        "benchmark": "exec_storm",
        "meta": meta,
        "summary": table,
        "targets": targets,
        "agent_idle": idle,
        "agent_storm": storm_usage,
        "rules_policy": rules_meta,
        "agent_rules_idle": idle_rules,
        "agent_rules_storm": rules_storm_usage,
        "failed_runs": len(failed_runs),
        "runs_with_foreign_bpf_programs": len(foreign_runs),
        "runs_with_other_load": len(busy_runs),
        "leftover_bpf_programs": leftover,
        "runs": runs,
    }
    with open(kv["out_json"], "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    # ---- markdown
    L = []
    m = meta
    L.append("# Exec storm benchmark")
    L.append("")
    L.append("Generated by `bench/run.sh` on %s (commit `%s`). Do not edit by hand; see "
             "[bench/README.md](../README.md) for what is measured and how to read it." % (m.get("date"), m.get("commit")))
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    rows = [
        ("Kernel", m.get("kernel")),
        ("CPU", "%s x %s" % (m.get("cpus"), m.get("cpu_model"))),
        ("Spawner", "`vigil_exec_storm --method %s`, %s, binary `%s`, waits for every child" % (m.get("method"), m.get("method_desc"), m.get("binary"))),
        ("Execs per run", ", ".join("P=%s: %s" % (k, v) for k, v in (m.get("execs") or {}).items())),
        ("Rounds", "%s (configuration order rotated every round)" % m.get("rounds")),
        ("Agent", "%s (`%s`)" % (m.get("agent_version") or "n/a", m.get("agent_cmd") or "not run")),
        ("agent+rules", rules_desc(rules_meta)),
        ("bpftrace", "%s: `%s` > /dev/null" % (m.get("bpftrace_version") or "n/a", m.get("bpftrace_prog"))),
        ("Load average at start / end", "%s / %s" % (m.get("loadavg_start"), m.get("loadavg_end"))),
        ("Duration", "%s s" % m.get("duration_seconds")),
    ]
    for k, v in rows:
        L.append("| %s | %s |" % (k, v))
    L.append("")
    L.append("## Targets")
    L.append("")
    ov = targets["agent_overhead"]
    zl = targets["zero_lost"]
    if ov["result"] == "NOT RUN":
        L.append("- **Agent overhead <= %g%%: NOT RUN** (%s)" % (max_overhead, ov.get("reason")))
        L.append("- **Zero lost events at the highest rate: NOT RUN** (%s)" % zl.get("reason"))
    else:
        L.append("- **Agent overhead <= %g%% of the exec rate: %s** (%s)" % (
            max_overhead, ov["result"],
            ", ".join("P=%s: %s" % (p, pct(v)) for p, v in sorted(ov["overhead_pct_by_parallel"].items()))))
        if ov.get("noisy"):
            L.append("  - Caution: the baseline runs alone spread by %s (max - min over median), more than twice the "
                     "target: a difference of a few percent is within this machine's noise. Check the paired overhead "
                     "and the Runs table (Others column), or rerun with more rounds on a quieter machine." % ", ".join("%s at P=%s" % (pct(v), p) for p, v in sorted(ov["baseline_spread_pct_by_parallel"].items())))
        L.append("- **Zero lost events at the highest rate reached: %s** (P=%s, median %s execs/s, peak %s execs/s: "
                 "%s lost or unaccounted over %s runs; %s over all agent runs)" % (
                     zl["result"], zl["parallel"], fmt_rate(zl["median_execs_per_second"]),
                     fmt_rate(zl["peak_execs_per_second"]), zl["lost_at_highest_rate"], zl["runs_with_status"],
                     zl["lost_all_agent_runs"]))
    L.extend(rules_target_lines(targets["rules_overhead"], max_overhead))
    if busy_runs:
        L.append("- Warning: during %d of %d runs, other processes used more than %g%% of one core "
                 "(up to %.0f%%; column Others under Runs); those runs are slowed by others, not by the tools." % (
                     len(busy_runs), len(runs), busy_threshold, max(r["other_cpu_percent"] for r in busy_runs)))
    if foreign_runs:
        L.append("- Warning: during %d of %d runs, tracing BPF programs of other processes were loaded "
                 "(up to %d); they slow every configuration and blur the ratios." % (
                     len(foreign_runs), len(runs), max(r["foreign_bpf_programs"] for r in foreign_runs)))
    if failed_runs:
        L.append("- Warning: %d run(s) had failed execs and are left out of the medians." % len(failed_runs))
    L.append("")
    L.append("## Exec rate")
    L.append("")
    L.append("Median of the rounds; ratio = median / baseline median, overhead = 1 - ratio. "
             "The paired column is the median of per-round ratios (each run against the baseline of its own round). "
             "Spawner CPU us/exec is the user+system CPU of the spawners and their children per exec (median): "
             "BPF programs run in the exec'ing task, so their cost lands there, while the agent's or bpftrace's "
             "own processing does not; it is less sensitive than wall time to other load on the machine.")
    L.append("")
    L.append("| Spawners | Config | Runs | Median execs/s | Min | Max | Ratio | Overhead | Paired overhead | Spawner CPU us/exec | vs baseline |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in table:
        if not t["runs"]:
            L.append("| %d | %s | 0 | n/a | | | | | | | |" % (t["parallel"], t["config"]))
            continue
        is_base = t["config"] == "baseline"
        L.append("| %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            t["parallel"], t["config"], t["runs"], fmt_rate(t["median_execs_per_second"]),
            fmt_rate(t["min_execs_per_second"]), fmt_rate(t["max_execs_per_second"]),
            "1" if is_base else ("%.3f" % t["ratio_to_baseline"] if "ratio_to_baseline" in t else "n/a"),
            "-" if is_base else pct(t.get("overhead_pct")),
            "-" if is_base else pct(t.get("paired_overhead_pct")),
            t.get("cpu_us_per_exec_median", "n/a"),
            "-" if is_base else ("n/a" if t.get("cpu_per_exec_vs_baseline_pct") is None else "%+.1f%%" % t["cpu_per_exec_vs_baseline_pct"])))
    L.append("")
    if rules_cmp:
        L.extend(rules_table_lines(rules_cmp, rules_meta))
    acc_rows = [t for t in table if t["config"] in ("agent", "agent+rules") and t["runs"]]
    if acc_rows:
        L.append("## Agent event accounting")
        L.append("")
        L.append("Deltas of the agent's `vigil status` counters across each run, summed over the rounds. "
                 "Expected = storm execs + warm-up execs; seen also counts whatever else ran on the machine. "
                 "Losses count all event types (exec, exit, fork). "
                 "Unaccounted = expected - exec events seen - exec losses, when positive (an exec neither seen nor counted as lost).")
        L.append("")
        L.append("| Spawners | Config | Expected execs | Exec events seen | Lost in kernel | Agent queue drops | Malformed | Client drops | Unaccounted |")
        L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for t in acc_rows:
            L.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                t["parallel"], t["config"], t.get("expected_execs", "n/a"), t.get("seen_exec", "n/a"), t.get("lost_kernel", "n/a"),
                t.get("agent_queue_dropped", "n/a"),
                t.get("malformed", "n/a"), t.get("client_events_dropped", "n/a"), t.get("unaccounted_execs", "n/a")))
        L.append("")
    L.append("## Resource use")
    L.append("")
    L.append("CPU is utime+stime from `/proc/<pid>/stat` over the interval, as % of one core; RSS and peak RSS (HWM) from "
             "`/proc/<pid>/status`, in MiB.")
    L.append("")
    L.append("| Process | Phase | CPU (median) | CPU (max) | RSS | Peak RSS |")
    L.append("|---|---|---:|---:|---:|---:|")
    mib = lambda kb: "n/a" if kb is None else "%.1f" % (kb / 1024.0)
    rules_proc = "vigil-agent, %s rules" % rules_meta.get("rules", "n/a")
    proc_name = {"agent": "vigil-agent", "agent+rules": rules_proc, "bpftrace": "bpftrace"}
    for name, u in (("vigil-agent", idle), (rules_proc, idle_rules)):
        if u:
            L.append("| %s | idle, %.0f s | %s | | %s | %s |" % (
                name, u["wall_seconds"], pct(u["cpu_percent_of_one_core"]), mib(u["rss_kb"]), mib(u["hwm_kb"])))
    for t in table:
        if t["config"] in proc_name and t.get("tool_cpu_percent_median") is not None:
            L.append("| %s | storm, %d spawner%s | %s | %s | %s | %s |" % (
                proc_name[t["config"]], t["parallel"], "s" if t["parallel"] > 1 else "",
                pct(t["tool_cpu_percent_median"]), pct(t["tool_cpu_percent_max"]), mib(t["tool_rss_kb_max"]), mib(t["tool_hwm_kb_max"])))
    L.append("")
    bpf_rows = [t for t in table if t.get("bpf_programs")]
    if bpf_rows:
        L.append("## In-kernel cost of the BPF programs")
        L.append("")
        L.append("From BPF run-time statistics (run_cnt, run_time_ns of each program the tool holds), medians over the "
                 "rounds. This is time spent inside the programs, in the task that forks, execs or exits, on top of the "
                 "work itself. It includes the helpers the programs call, among them submitting a ring-buffer or "
                 "perf-buffer record and raising the reader's wake-up (expensive in a VM); it excludes the "
                 "tracepoint dispatch and the tool's user-space work.")
        L.append("")
        L.append("| Spawners | Config | Program | Runs per exec | ns per run | ns per exec |")
        L.append("|---:|---|---|---:|---:|---:|")
        for t in bpf_rows:
            for pr in t["bpf_programs"]:
                L.append("| %d | %s | %s | %s | %s | %s |" % (
                    t["parallel"], t["config"], pr["name"], pr["runs_per_exec_median"], pr["avg_ns_median"], pr["ns_per_exec_median"]))
            L.append("| %d | %s | **all** | | | **%s** |" % (t["parallel"], t["config"], t["bpf_ns_per_exec_median"]))
        L.append("")
    L.append("## Runs")
    L.append("")
    L.append("Others: CPU used by every other process during the run, as % of one core (machine busy time minus "
             "the storm and the tool); steal is CPU time the hypervisor gave to other guests.")
    L.append("")
    L.append("| Round | Order | Spawners | Config | Execs/s | Failed | p50 / p99 latency (us) | Tool CPU | Others | Steal | Lost |")
    L.append("|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|")
    for r in sorted(runs, key=lambda r: (r["round"], r["order"])):
        lat = r["storm"].get("latency_us") or {}
        tu = r.get("tool_usage")
        L.append("| %d | %d | %d | %s | %s | %s | %s / %s | %s | %s | %s | %s |" % (
            r["round"], r["order"], r["parallel"], r["config"], fmt_rate(r["execs_per_second"]), r["failed"],
            lat.get("p50", "n/a"), lat.get("p99", "n/a"),
            pct(tu["cpu_percent_of_one_core"]) if tu else "-",
            pct(r.get("other_cpu_percent")), pct(r.get("steal_percent")),
            (r["agent"]["lost_total"] + r["agent"]["unaccounted_execs"]) if "agent" in r else "-"))
    L.append("")
    if leftover is not None:
        if not leftover.get("checked"):
            L.append("BPF programs left loaded: not checked (bpftool unavailable).")
        elif leftover.get("programs"):
            L.append("**Warning: BPF programs left loaded after the run:** %s" % json.dumps(leftover["programs"]))
        else:
            L.append("BPF programs left loaded after the run: none.")
        L.append("")
    notes = m.get("notes") or []
    if notes:
        L.append("## Notes")
        L.append("")
        for n in notes:
            L.append("- " + n)
        L.append("")
    with open(kv["out_md"], "w") as f:
        f.write("\n".join(L))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "status-ok":
        cmd_status_ok(args[0])
    elif cmd == "record":
        cmd_record(args)
    elif cmd == "idle":
        cmd_idle(args)
    elif cmd == "progs":
        cmd_progs(args[0])
    elif cmd == "hold-stats":
        cmd_hold_stats()
    elif cmd == "progstats":
        cmd_progstats(args[0], args[1])
    elif cmd == "foreign":
        cmd_foreign(args[0] if args else "")
    elif cmd == "leftover":
        cmd_leftover(args[0], args[1] if len(args) > 1 else "")
    elif cmd == "rate":
        print(int(float(load(args[0])["execs_per_second"])))
    elif cmd == "field":
        v = load(args[0])
        for k in args[1].split("."):
            v = v.get(k) if isinstance(v, dict) else None
        print("" if v is None else v)
    elif cmd == "summarize":
        cmd_summarize(args)
    elif cmd == "policy-yaml":
        cmd_policy_yaml(*args)
    elif cmd == "policy-check":
        cmd_policy_check(*args)
    elif cmd == "policy-count":
        cmd_policy_count(args[0])
    else:
        sys.exit("unknown helper command " + cmd)


main()
PY

helper() { "$PYTHON" "$HELPER" "$@"; }

# ---------------------------------------------------------------------------------------------
# Measurements.

# "ticks rss_kb hwm_kb" of a pid: utime+stime in clock ticks, VmRSS, VmHWM.
proc_sample() {
  local pid=$1 stat rest
  local -a f
  stat=$(<"/proc/$pid/stat") || return 1
  rest=${stat##*) }     # the comm field may contain spaces; fields after it start at "state"
  read -ra f <<<"$rest" # f[0] is field 3, so utime (14) is f[11] and stime (15) is f[12]
  local rss hwm
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  echo "$((f[11] + f[12])) ${rss:-0} ${hwm:-0}"
}

# "busy steal" clock ticks of the whole machine from /proc/stat.
cpu_sample() {
  local _cpu u n s _idle _iow irq sirq st _rest
  read -r _cpu u n s _idle _iow irq sirq st _rest </proc/stat
  echo "$((u + n + s + irq + sirq)) $st"
}

# Waits (at most QUIET_MAX s) until processes other than tool pid $1 use at most QUIET_PCT % of
# one core over a 1 s window. A shared machine is never silent; this avoids starting a run in
# the middle of somebody's build. Sets QUIET_WAITED and OTHER_BEFORE_PCT.
wait_quiet() {
  local tool_pid=$1 start=$SECONDS c0 c1 t0 t1 other
  QUIET_WAITED=0
  OTHER_BEFORE_PCT=""
  ((QUIET_MAX > 0)) || return 0
  while :; do
    c0=$(cpu_sample)
    t0=0
    [[ -n "$tool_pid" ]] && t0=$(proc_sample "$tool_pid" | cut -d' ' -f1)
    sleep 1
    c1=$(cpu_sample)
    t1=0
    [[ -n "$tool_pid" ]] && t1=$(proc_sample "$tool_pid" | cut -d' ' -f1)
    other=$(((${c1%% *} - ${c0%% *} - (t1 - t0)) * 100 / CLK_TCK))
    ((other < 0)) && other=0
    OTHER_BEFORE_PCT=$other
    QUIET_WAITED=$((SECONDS - start))
    ((other <= QUIET_PCT)) && break
    if ((QUIET_WAITED >= QUIET_MAX || QUIET_SPENT + QUIET_WAITED >= QUIET_BUDGET)); then
      log "machine still busy (others use ${other}% of a core) after ${QUIET_WAITED}s; running anyway"
      break
    fi
  done
  # Waiting beyond the first measurement counts against the budget.
  ((QUIET_WAITED > 1)) && QUIET_SPENT=$((QUIET_SPENT + QUIET_WAITED - 1))
  return 0
}

agent_status() { # $1: output file
  "$CLI" --server "unix://$SOCK" status -o json >"$1" 2>"$WORK/status.err" && helper status-ok "$1" 2>/dev/null
}

# agent_status with retries, for the counters around a run.
agent_counters() { # $1: output file
  local i
  for ((i = 0; i < 3; i++)); do
    agent_status "$1" && return 0
    sleep 0.5
  done
  log "warning: vigil status failed: $(tr '\n' ' ' <"$WORK/status.err")"
  return 1
}

# One storm run. Args: config round order parallel.
RUN_INDEX=0
storm_run() {
  local config=$1 round=$2 order=$3 p=$4 execs=${EXECS_BY_P[$4]}
  local out=$WORK/storm-$RUN_INDEX.json sb="" sa="" pb="" pa="" tool_pid=""
  RUN_INDEX=$((RUN_INDEX + 1))
  case "$config" in
    agent | agent+rules) tool_pid=$AGENT_PID ;;
    bpftrace) tool_pid=$BPFTRACE_PID ;;
  esac
  if [[ "$config" == agent* ]]; then
    sb=$WORK/status-before-$RUN_INDEX.json
    agent_counters "$sb" || sb=""
  fi
  local foreign=""
  ((HAVE_BPFTOOL)) && foreign=$(helper foreign "$tool_pid")
  wait_quiet "$tool_pid"
  local gb="" ga=""
  if ((BPF_STATS_ON)) && [[ -n "$tool_pid" ]]; then
    gb=$WORK/progs-before-$RUN_INDEX.json
    helper progstats "$tool_pid" "$gb" || gb=""
  fi
  [[ -n "$tool_pid" ]] && pb=$(proc_sample "$tool_pid")
  local cb ca
  cb=$(cpu_sample)
  local t0=$EPOCHREALTIME
  # In the background so that a signal reaches the trap at once, not after the run.
  "$STORM" --execs "$execs" --parallel "$p" --method "$METHOD" >"$out" &
  STORM_PID=$!
  wait "$STORM_PID"
  local rc=$?
  STORM_PID=
  local t1=$EPOCHREALTIME
  ca=$(cpu_sample)
  [[ -n "$tool_pid" ]] && pa=$(proc_sample "$tool_pid")
  if [[ -n "$gb" ]]; then
    ga=$WORK/progs-after-$RUN_INDEX.json
    helper progstats "$tool_pid" "$ga" || { gb="" ga=""; }
  fi
  if ((rc > 1)) || [[ ! -s "$out" ]]; then
    log "warning: vigil_exec_storm failed (exit $rc), run dropped"
    return 0
  fi
  if [[ "$config" == agent* ]]; then
    sleep 0.5 # let the agent drain what is still in the ring buffer
    sa=$WORK/status-after-$RUN_INDEX.json
    agent_counters "$sa" || sa=""
    [[ -n "$sb" ]] || sa=""
  fi
  local wall
  wall=$("$PYTHON" -c "print(${t1/,/.} - ${t0/,/.})")
  helper record out="$RUNS" round="$round" order="$order" config="$config" parallel="$p" \
    storm="$out" clk_tck="$CLK_TCK" wall="$wall" proc_before="$pb" proc_after="$pa" \
    status_before="$sb" status_after="$sa" foreign_progs="$foreign" cpu_before="$cb" cpu_after="$ca" \
    quiet_waited="$QUIET_WAITED" other_before_pct="$OTHER_BEFORE_PCT" progs_before="$gb" progs_after="$ga"
  local rate lost=""
  rate=$(helper rate "$out")
  if [[ -n "$sa" ]]; then
    lost=$(tail -n1 "$RUNS" | "$PYTHON" -c 'import json,sys; a=json.load(sys.stdin).get("agent") or {}; print(" lost=%s unaccounted=%s" % (a.get("lost_total"), a.get("unaccounted_execs")))')
  fi
  local other
  other=$(tail -n1 "$RUNS" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("other_cpu_percent"))')
  lost+="  [others ${other}% of a core]"
  [[ -n "$foreign" && "$foreign" != 0 ]] && lost+=" (warning: $foreign foreign tracing BPF programs loaded)"
  log "round $round  P=$p  $(printf '%-11s' "$config")  $rate execs/s${lost}"
}

AGENT_SKIP_REASON=""
AGENT_VERSION=""
AGENT_CMD=""
IDLE_JSON=$WORK/idle.json
IDLE_DONE=0
IDLE_RULES_JSON=$WORK/idle-rules.json
IDLE_RULES_DONE=0
OUR_PIDS=""
# agent+rules: the generated policy, why the configuration is skipped (if it is), per-round
# records of the applied policy, and whether an apply has worked at least once.
POLICY_FILE=$WORK/$POLICY_NAME.yaml
POLICY_KINDS="{}"
RULES_SKIP_REASON=""
RULES_ROUNDS=$WORK/rules-rounds.jsonl
RULES_APPLIED=0
APPLY_ERROR=""
APPLY_MS=""
# An empty policy directory, so that the agent configuration runs with no policy whatever the
# machine has in the agent's default directory (only if the agent has --policy-dir).
POLICY_DIR_ARGS=()

vigil_cli() { "$CLI" --server "unix://$SOCK" "$@"; }

start_agent() {
  local -a args=(--api "unix://$SOCK" "${POLICY_DIR_ARGS[@]}")
  [[ -n "$EVENT_RING_SIZE" ]] && args+=(--event-ring-size "$EVENT_RING_SIZE")
  # shellcheck disable=SC2206
  [[ -n "$AGENT_EXTRA_ARGS" ]] && args+=($AGENT_EXTRA_ARGS)
  AGENT_CMD="vigil-agent ${args[*]}"
  AGENT_CMD=${AGENT_CMD//$WORK/\$TMP}
  rm -f "$SOCK"
  "$AGENT" "${args[@]}" >>"$WORK/agent.log" 2>&1 &
  AGENT_PID=$!
  OUR_PIDS+="$AGENT_PID,"
  local deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
      wait "$AGENT_PID" 2>/dev/null
      log "agent exited during start-up; last log lines:"
      tail -n 20 "$WORK/agent.log" >&2
      AGENT_PID=
      return 1
    fi
    if agent_status "$WORK/status-ready.json"; then
      [[ -n "$AGENT_VERSION" ]] || AGENT_VERSION=$(helper field "$WORK/status-ready.json" version)
      return 0
    fi
    sleep 0.2
  done
  log "agent did not answer status within ${READY_TIMEOUT}s; last log lines:"
  tail -n 20 "$WORK/agent.log" >&2
  stop_agent
  return 1
}

measure_idle() { # $1: output file, $2: what is measured (for the log)
  ((IDLE_SECONDS > 0)) || return 0
  sleep 1 # let start-up work (procfs scan, first status) settle
  local pb pa t0 t1
  pb=$(proc_sample "$AGENT_PID") || return 0
  t0=$EPOCHREALTIME
  sleep "$IDLE_SECONDS"
  pa=$(proc_sample "$AGENT_PID") || return 0
  t1=$EPOCHREALTIME
  helper idle proc_before="$pb" proc_after="$pa" clk_tck="$CLK_TCK" \
    wall="$("$PYTHON" -c "print(${t1/,/.} - ${t0/,/.})")" >"$1"
  log "$2 idle: $(cat "$1")"
}

# Applies the generated policy to the running agent and checks with `vigil policy list` that
# all its rules are enforcing. Sets APPLY_MS, or APPLY_ERROR on failure.
apply_rules() {
  local t0=$EPOCHREALTIME t1 check
  APPLY_ERROR=""
  APPLY_MS=""
  if ! vigil_cli policy apply -f "$POLICY_FILE" >"$WORK/apply.out" 2>&1; then
    APPLY_ERROR="\`vigil policy apply\` failed: $(head -c 400 "$WORK/apply.out" | tr '\n' ' ' | sed 's/ *$//')"
    return 1
  fi
  t1=$EPOCHREALTIME
  APPLY_MS=$("$PYTHON" -c "print(round(1000 * (${t1/,/.} - ${t0/,/.})))")
  if ! vigil_cli policy list -o json >"$WORK/policy-list.json" 2>"$WORK/policy-list.err"; then
    APPLY_ERROR="\`vigil policy list\` failed after the apply: $(head -c 400 "$WORK/policy-list.err" | tr '\n' ' ')"
    return 1
  fi
  if ! check=$(helper policy-check "$WORK/policy-list.json" "$POLICY_NAME" "$RULES" 2>&1); then
    APPLY_ERROR="applied, but \`vigil policy list\` disagrees: $check"
    return 1
  fi
  log "applied $RULES rules in ${APPLY_MS} ms (vigil policy apply); policy list: $check"
  return 0
}

# After the runs of a round: the policy must still be there, and its rules' hit counts tell
# whether anything matched. Appends one line to RULES_ROUNDS.
rules_after_round() { # $1: round
  local check=""
  if vigil_cli policy list -o json >"$WORK/policy-list.json" 2>/dev/null; then
    check=$(helper policy-check "$WORK/policy-list.json" "$POLICY_NAME" "$RULES" 2>&1) || {
      log "warning: after the runs: $check"
      NOTES+=("Round $1: after the agent+rules runs the policy was no longer as applied: $check")
      check=""
    }
  fi
  "$PYTHON" -c 'import json,sys; after=json.loads(sys.argv[3]) if sys.argv[3] else None
print(json.dumps({"round": int(sys.argv[1]), "apply_ms": int(sys.argv[2]), "after": after}))' \
    "$1" "${APPLY_MS:-0}" "$check" >>"$RULES_ROUNDS"
}

# agent config: there must be no policy at all. Counts the rules the agent reports, if it can
# (an agent without the policy API has none).
check_no_rules() { # $1: round
  local n
  vigil_cli policy list -o json >"$WORK/policy-list-agent.json" 2>/dev/null || return 0
  n=$(helper policy-count "$WORK/policy-list-agent.json") || return 0
  if ((n > 0)); then
    log "warning: the agent configuration has $n policy rules loaded"
    NOTES+=("Round $1: the agent configuration (meant to run without policy) had $n policy rules loaded.")
  fi
}

start_bpftrace() {
  bpftrace -e "$BPFTRACE_PROG" >/dev/null 2>>"$WORK/bpftrace.log" &
  BPFTRACE_PID=$!
  OUR_PIDS+="$BPFTRACE_PID,"
  # Attached once bpftool lists its perf-event attachment on the tracepoint.
  local i
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$BPFTRACE_PID" 2>/dev/null; then
      wait "$BPFTRACE_PID" 2>/dev/null
      BPFTRACE_PID=
      log "bpftrace exited during start-up:"
      tail -n 20 "$WORK/bpftrace.log" >&2
      return 1
    fi
    if ((HAVE_BPFTOOL)); then
      bpftool perf show 2>/dev/null | grep -q "^pid $BPFTRACE_PID .*sched_process_exec" && return 0
    elif ((i >= 30)); then
      return 0 # no bpftool: give it 3 s
    fi
    sleep 0.1
  done
  log "bpftrace did not attach within 10 s"
  stop_bpftrace
  return 1
}

# ---------------------------------------------------------------------------------------------
# Preconditions.

bench_lock

if [[ ! -x "$STORM" ]]; then
  log "building vigil_exec_storm"
  cmake --build "$BUILD_DIR" --target vigil_exec_storm -j "$(nproc)" >&2 || die "cannot build vigil_exec_storm in $BUILD_DIR"
fi
HAVE_BPFTOOL=0
command -v bpftool >/dev/null && HAVE_BPFTOOL=1

has_config() { [[ " $CONFIGS " == *" $1 "* ]]; }
drop_config() {
  local c kept=""
  for c in $CONFIGS; do [[ "$c" == "$1" ]] || kept+="$c "; done
  CONFIGS=$kept
}

NOTES=()
if has_config agent || has_config agent+rules; then
  if [[ ! -x "$AGENT" ]]; then
    AGENT_SKIP_REASON="agent binary $AGENT not found (build it first)"
  elif [[ ! -x "$CLI" ]]; then
    AGENT_SKIP_REASON="CLI $CLI not found (needed to read agent status)"
  fi
  if [[ -n "$AGENT_SKIP_REASON" ]]; then
    log "SKIPPING the agent configurations: $AGENT_SKIP_REASON"
    NOTES+=("Agent configurations skipped: $AGENT_SKIP_REASON.")
    has_config agent+rules && RULES_SKIP_REASON=$AGENT_SKIP_REASON
    drop_config agent
    drop_config agent+rules
  elif "$AGENT" --help 2>&1 | grep -q -- '--policy-dir'; then
    mkdir -p "$WORK/no-policies"
    POLICY_DIR_ARGS=(--policy-dir "$WORK/no-policies")
  fi
fi
if has_config agent+rules; then
  # The policy is generated here and checked offline first; the agent's own answer comes when
  # the configuration first runs (an agent without the policy API makes it skip, not fail).
  if ! "$CLI" policy --help >/dev/null 2>&1; then
    RULES_SKIP_REASON="the CLI has no \`vigil policy\` command"
  elif ! POLICY_KINDS=$(helper policy-yaml "$RULES" "$POLICY_FILE" "$POLICY_NAME" /bin/true); then
    RULES_SKIP_REASON="cannot generate the policy"
    POLICY_KINDS="{}"
  elif ! "$CLI" policy validate -f "$POLICY_FILE" >"$WORK/validate.out" 2>&1; then
    RULES_SKIP_REASON="the generated policy does not validate: $(head -c 400 "$WORK/validate.out" | tr '\n' ' ')"
  fi
  if [[ -n "$RULES_SKIP_REASON" ]]; then
    log "SKIPPING the agent+rules configuration: $RULES_SKIP_REASON"
    drop_config agent+rules
  else
    log "policy $POLICY_NAME: $RULES exec rules, none matching the storm: $POLICY_KINDS"
  fi
fi
if has_config bpftrace && ! command -v bpftrace >/dev/null; then
  log "SKIPPING the bpftrace configuration: bpftrace not installed"
  NOTES+=("bpftrace configuration skipped: bpftrace not installed.")
  drop_config bpftrace
fi
read -ra CONFIG_LIST <<<"$CONFIGS"
RULES_REQUESTED=0
[[ " ${BENCH_CONFIGS:-agent+rules} " == *" agent+rules "* ]] && RULES_REQUESTED=1

if ! mountpoint -q "$TRACEFS"; then
  mount -t tracefs nodev "$TRACEFS" || die "cannot mount tracefs on $TRACEFS"
  MOUNTED_TRACEFS=1
  log "mounted tracefs on $TRACEFS (will unmount at exit)"
fi

# BPF run-time statistics stay on while a BPF_ENABLE_STATS fd is open, whatever anyone writes to
# kernel.bpf_stats_enabled meanwhile; the holder dies with this script, closing the fd.
BPF_STATS_ON=0
if ((BPF_STATS && HAVE_BPFTOOL)); then
  "$PYTHON" "$HELPER" hold-stats >"$WORK/stats-holder.out" 2>&1 &
  STATS_PID=$!
  for ((i = 0; i < 50; i++)); do
    grep -q '^ok' "$WORK/stats-holder.out" 2>/dev/null && { BPF_STATS_ON=1; break; }
    kill -0 "$STATS_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ((BPF_STATS_ON)); then
    log "BPF run-time statistics on (BPF_ENABLE_STATS) for per-program run times"
  else
    log "note: cannot turn on BPF run-time statistics: $(cat "$WORK/stats-holder.out")"
    stop_pid "$STATS_PID" TERM 2
    STATS_PID=
  fi
fi

if ((HAVE_BPFTOOL)); then
  helper progs "$WORK/progs-before.json"
  foreign=$("$PYTHON" -c 'import json,sys; print(len(json.load(open(sys.argv[1])) or []))' "$WORK/progs-before.json")
  if ((foreign > 0)); then
    log "note: $foreign BPF program(s) were already loaded before the benchmark"
    NOTES+=("$foreign BPF program(s) were already loaded by other processes when the benchmark started; they run in every configuration.")
  fi
fi
if pgrep -x vigil-agent >/dev/null || pgrep -x bpftrace >/dev/null; then
  log "warning: a vigil-agent or bpftrace is already running; its probes are active in every configuration"
  NOTES+=("A vigil-agent or bpftrace not started by the benchmark was running; its probes were active in every configuration.")
fi
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
if "$PYTHON" -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0.5 else 1)' "${LOADAVG_START%% *}"; then
  log "note: 1-minute load average is ${LOADAVG_START%% *}; other load makes the ratios noisy"
  NOTES+=("The 1-minute load average was ${LOADAVG_START%% *} when the benchmark started: other work was running on the machine.")
fi

# ---------------------------------------------------------------------------------------------
# Calibration: execs per run at each parallelism.

declare -A EXECS_BY_P
for p in $PARALLEL; do
  if [[ -n "$EXECS" ]]; then
    EXECS_BY_P[$p]=$EXECS
    continue
  fi
  cal=$WORK/calibrate-$p.json
  wait_quiet ""
  "$STORM" --execs $((500 * p)) --parallel "$p" --method "$METHOD" >"$cal" || die "calibration run failed"
  rate=$(helper rate "$cal")
  n=$(((rate * RUN_SECONDS + 50) / 100 * 100))
  ((n < 200 * p)) && n=$((200 * p))
  EXECS_BY_P[$p]=$n
  log "calibration: P=$p baseline ~$rate execs/s -> $n execs per run (~${RUN_SECONDS}s)"
done

# ---------------------------------------------------------------------------------------------
# Rounds. Each round runs every configuration once, in an order rotated by one every round;
# within a configuration every parallelism runs back to back with the same tool instance.

NCONF=${#CONFIG_LIST[@]}
for ((round = 1; round <= ROUNDS; round++)); do
  for ((k = 0; k < NCONF; k++)); do
    config=${CONFIG_LIST[$(((k + round - 1) % NCONF))]}
    case "$config" in
      agent)
        if ! start_agent; then
          log "round $round: agent failed to start, skipping its runs"
          NOTES+=("Round $round: the agent failed to start; its runs are missing.")
          continue
        fi
        check_no_rules "$round"
        if ((!IDLE_DONE)); then
          measure_idle "$IDLE_JSON" agent
          IDLE_DONE=1
        fi
        ;;
      agent+rules)
        # Skipped for good once an apply fails before any has worked (no policy API yet).
        [[ -z "$RULES_SKIP_REASON" ]] || continue
        if ! start_agent; then
          log "round $round: agent failed to start, skipping the agent+rules runs"
          NOTES+=("Round $round: the agent failed to start for agent+rules; its runs are missing.")
          continue
        fi
        if ! apply_rules; then
          stop_agent
          if ((RULES_APPLIED)); then
            log "round $round: $APPLY_ERROR; skipping the agent+rules runs"
            NOTES+=("Round $round: $APPLY_ERROR; the agent+rules runs are missing.")
          else
            RULES_SKIP_REASON=$APPLY_ERROR
            log "SKIPPING the agent+rules configuration: $APPLY_ERROR"
          fi
          continue
        fi
        RULES_APPLIED=$((RULES_APPLIED + 1))
        if ((!IDLE_RULES_DONE)); then
          measure_idle "$IDLE_RULES_JSON" "agent with $RULES rules"
          IDLE_RULES_DONE=1
        fi
        ;;
      bpftrace)
        if ! start_bpftrace; then
          NOTES+=("Round $round: bpftrace failed to attach; its runs are missing.")
          continue
        fi
        ;;
    esac
    for p in $PARALLEL; do
      storm_run "$config" "$round" "$k" "$p"
    done
    case "$config" in
      agent) stop_agent ;;
      agent+rules)
        rules_after_round "$round"
        stop_agent
        ;;
      bpftrace) stop_bpftrace ;;
    esac
  done
done

# ---------------------------------------------------------------------------------------------
# Leftovers and summary.

sleep 1 # program release after the last close is asynchronous
if ((HAVE_BPFTOOL)); then
  helper leftover "$WORK/progs-before.json" "$OUR_PIDS" >"$WORK/leftover.json"
else
  echo '{"checked": false}' >"$WORK/leftover.json"
fi

method_desc() {
  case "$METHOD" in
    fork) echo "fork() then execve() in the child" ;;
    vfork) echo "vfork() then execve() in the child" ;;
    posix_spawn) echo "glibc posix_spawn()" ;;
  esac
}
execs_json=$(for p in $PARALLEL; do echo "$p ${EXECS_BY_P[$p]}"; done |
  "$PYTHON" -c 'import json,sys; print(json.dumps({l.split()[0]: int(l.split()[1]) for l in sys.stdin if l.strip()}))')
notes_json=$(printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}" | "$PYTHON" -c 'import json,sys; print(json.dumps([l.rstrip("\n") for l in sys.stdin if l.strip()]))')
commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo none)
[[ -n "$(git -C "$REPO_DIR" status --porcelain 2>/dev/null | head -n1)" ]] && commit+="+dirty"
bt_version=$(bpftrace --version 2>/dev/null | awk '{print $2}')
duration=$("$PYTHON" -c "print(round(${EPOCHREALTIME/,/.} - ${START_EPOCH/,/.}))")

META=$WORK/meta.json
"$PYTHON" - "$META" <<PY
import json, sys
meta = {
    "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
    "commit": "$commit",
    "kernel": "$(uname -r)",
    "cpus": $(nproc),
    "cpu_model": "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)",
    "method": "$METHOD",
    "method_desc": "$(method_desc)",
    "binary": "/bin/true",
    "execs": $execs_json,
    "rounds": $ROUNDS,
    "configs": "${CONFIG_LIST[*]}".split(),
    "agent_version": "$AGENT_VERSION",
    "agent_cmd": "$AGENT_CMD",
    "agent_skipped": "$AGENT_SKIP_REASON" or None,
    "bpftrace_version": "$bt_version",
    "bpftrace_prog": $("$PYTHON" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$BPFTRACE_PROG"),
    "loadavg_start": "$LOADAVG_START",
    "loadavg_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "duration_seconds": $duration,
    "notes": $notes_json,
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
PY

# The agent+rules policy: what it holds, why it did not run (if so), each round's apply.
RULES_META=$WORK/rules-meta.json
rules_skip=$RULES_SKIP_REASON
((RULES_REQUESTED)) || rules_skip="agent+rules not in BENCH_CONFIGS"
"$PYTHON" - "$RULES_META" "$RULES" "$POLICY_NAME" "$POLICY_KINDS" "$rules_skip" "$RULES_ROUNDS" "${POLICY_DIR_ARGS[*]+set}" <<'PY'
import json, os, sys
out, n, name, kinds, skip, rounds_path, policy_dir = sys.argv[1:8]
rounds = []
if os.path.exists(rounds_path):
    with open(rounds_path) as f:
        rounds = [json.loads(l) for l in f if l.strip()]
json.dump({"rules": int(n), "policy_name": name, "kinds": json.loads(kinds or "{}"), "skipped": skip or None,
           "applied_rounds": rounds, "agent_policy_dir_isolated": bool(policy_dir)}, open(out, "w"), indent=1)
PY

mkdir -p "$RESULTS_DIR"
helper summarize meta="$META" runs="$RUNS" idle="$IDLE_JSON" idle_rules="$IDLE_RULES_JSON" rules="$RULES_META" \
  leftover="$WORK/leftover.json" \
  out_json="$RESULTS_DIR/exec_storm.json.tmp" out_md="$RESULTS_DIR/exec_storm.md.tmp" max_overhead_pct=3 busy_pct="$QUIET_PCT" ||
  die "summary failed"
mv "$RESULTS_DIR/exec_storm.json.tmp" "$RESULTS_DIR/exec_storm.json"
mv "$RESULTS_DIR/exec_storm.md.tmp" "$RESULTS_DIR/exec_storm.md"

log "wrote $RESULTS_DIR/exec_storm.md and exec_storm.json in ${duration}s"
# Echo the targets and the rate table.
awk '/^## /{show = ($0 == "## Targets" || $0 == "## Exec rate")} show' "$RESULTS_DIR/exec_storm.md" >&2
exit 0
