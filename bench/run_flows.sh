#!/usr/bin/env bash
# shellcheck disable=SC2317 # everything after the re-exec under unshare looks unreachable to it
# Flow-tracking benchmarks: what does Vigil's network flow tracking cost, and how much memory
# does a full flow table take?
#
#   bench/run_flows.sh [BUILD_DIR]   (BUILD_DIR defaults to "build"; `make bench` calls this)
#
# A veth pair joins the host (vbf-host, the tracked end: the agent tracks flows only in its own
# network namespace) and the namespace vigil-bf (vbf-ns). Three parts, writing
# bench/results/flows.{md,json}:
#   throughput  iperf3 from the host to a server in vigil-bf: TCP throughput and the UDP packet
#               rate of small datagrams, the client in a cgroup of its own, in three
#               configurations alternated round by round:
#                 baseline  nothing tracks anything
#                 vigil     vigil-agent --flow-interfaces vbf-host (tc programs keeping the flow
#                           table, cgroup_skb byte counting, socket tracepoints, kfree_skb)
#                 nftables  an inet table counting the client cgroup's bytes in output and
#                           input (`socket cgroupv2 level N "<cgroup>" counter`): the non-BPF
#                           way to count per-cgroup traffic
#   memory      vigil-agent --flow-table-size BENCH_FLOW_TABLE_SIZE, then BENCH_FLOW_COUNT
#               distinct UDP flows sent from vigil-bf to the host end (raw frames, kept active
#               until the agent's table holds them all): the agent's VmRSS/VmHWM before and
#               after, and the kernel memory (memlock) of its vigil_flow* maps
#   cost        vigil-agent as in throughput, with kernel.bpf_stats_enabled=1 (the previous value
#               is restored on exit, whatever happens): a fixed iperf3 UDP run and TCP run,
#               BENCH_FLOW_COST_ROUNDS times, and for each of the agent's flow programs
#               (vigil_flow_*, vigil_cgroup_*, vigil_sock_*, vigil_kfree_skb) its runs and average
#               ns per run over each run, and their total ns per packet sent: the CPU cost per
#               event, which moves far less with the machine's load than throughput does
# Missed targets are reported (PASS/FAIL in the summary), never turned into a failing exit
# status. The script fails only when it cannot run at all.
#
# Nothing leaves the veth pair: the namespace has no other interface, the host end's subnet
# (10.204.0.0/16) is on the veth only, and the memory part's frames go to a UDP socket this
# script holds open on the host end (so the host sends no ICMP errors back). The script runs
# in a private mount namespace with its own bpffs on /sys/fs/bpf; on any exit it stops what it
# started, runs `vigil-agent --cleanup`, deletes the namespace, the nft table and its cgroup, and
# puts kernel.bpf_stats_enabled back as it found it.
#
# Environment:
#   BENCH_FLOW_PARTS        parts to run (default "throughput memory cost")
#   BENCH_FLOW_SECONDS      length of one iperf3 run (default 5)
#   BENCH_FLOW_ROUNDS       rounds of the throughput part (default 5)
#   BENCH_FLOW_CONFIGS      configurations (default "baseline vigil nftables"; baseline first,
#                           ratios are against it)
#   BENCH_FLOW_WORKLOADS    "tcp udp" (default)
#   BENCH_FLOW_UDP_LEN      UDP payload bytes (default 64)
#   BENCH_FLOW_CLIENT_CPU   CPU of the iperf3 client (default 0)
#   BENCH_FLOW_SERVER_CPU   CPU of the iperf3 server (default: the last CPU)
#   BENCH_FLOW_COUNT        distinct flows of the memory part (default 100000)
#   BENCH_FLOW_TABLE_SIZE   --flow-table-size of the memory part (default 262144)
#   BENCH_FLOW_FILL_TIMEOUT seconds to wait for the agent's table to hold them (default 120)
#   BENCH_FLOW_HOLD_SECONDS then how long the flows stay active before the second sample (5)
#   BENCH_FLOW_COST_SECONDS length of one iperf3 run of the cost part (default 3)
#   BENCH_FLOW_COST_ROUNDS  rounds of the cost part, each one run of every workload (default 3)
#   BENCH_AGENT_ARGS        extra agent arguments, every part (word-split)
#   BENCH_READY_TIMEOUT     seconds to wait for the agent to track the interface (default 30)
#   BENCH_QUIET_PCT / BENCH_QUIET_MAX / BENCH_QUIET_BUDGET   as in bench/xdp_flood.sh (15, 20,
#                           150): before each run, wait a little while other work is busy
#   BENCH_RESULTS_DIR       where to write results (default bench/results next to this script)
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

log() { printf '[bench-flows %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

((EUID == 0)) || die "must run as root (BPF programs, network namespaces, cgroups)"

# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
# Our bpffs on /sys/fs/bpf and the netns mount exist only in a mount namespace of our own.
enter_private_mount_ns "$@"
resolve_build_dir "${1:-build}"

PARTS=${BENCH_FLOW_PARTS:-"throughput memory cost"}
RUN_SECONDS=${BENCH_FLOW_SECONDS:-5}
ROUNDS=${BENCH_FLOW_ROUNDS:-5}
CONFIGS=${BENCH_FLOW_CONFIGS:-"baseline vigil nftables"}
WORKLOADS=${BENCH_FLOW_WORKLOADS:-"tcp udp"}
UDP_LEN=${BENCH_FLOW_UDP_LEN:-64}
NCPU=$(nproc)
CLIENT_CPU=${BENCH_FLOW_CLIENT_CPU:-0}
SERVER_CPU=${BENCH_FLOW_SERVER_CPU:-$((NCPU - 1))}
FLOW_COUNT=${BENCH_FLOW_COUNT:-100000}
TABLE_SIZE=${BENCH_FLOW_TABLE_SIZE:-262144}
FILL_TIMEOUT=${BENCH_FLOW_FILL_TIMEOUT:-120}
HOLD_SECONDS=${BENCH_FLOW_HOLD_SECONDS:-5}
COST_SECONDS=${BENCH_FLOW_COST_SECONDS:-3}
COST_ROUNDS=${BENCH_FLOW_COST_ROUNDS:-3}
AGENT_EXTRA_ARGS=${BENCH_AGENT_ARGS:-}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}
QUIET_PCT=${BENCH_QUIET_PCT:-15}
QUIET_MAX=${BENCH_QUIET_MAX:-20}
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-150}
QUIET_SPENT=0
RESULTS_DIR=${BENCH_RESULTS_DIR:-$SCRIPT_DIR/results}

AGENT=$BUILD_DIR/agent/vigil-agent
CLI=$BUILD_DIR/cli/vigil
NS=vigil-bf
IF_HOST=vbf-host
IF_NS=vbf-ns
ADDR_HOST=10.204.0.1
ADDR_NS=10.204.0.2
PREFIX=16
IPERF_PORT=5201
SINK_PORT=9
PIN_DIR=/sys/fs/bpf/vigil-bench-flows
NFT_TABLE=vigil_bench_flows

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
has_part() { [[ " $PARTS " == *" $1 "* ]]; }
for p in $PARTS; do
  case "$p" in throughput | memory | cost) ;; *) die "bad BENCH_FLOW_PARTS entry '$p'" ;; esac
done
for c in $CONFIGS; do
  case "$c" in baseline | vigil | nftables) ;; *) die "bad BENCH_FLOW_CONFIGS entry '$c'" ;; esac
done
[[ "$CONFIGS " == "baseline "* ]] || die "BENCH_FLOW_CONFIGS must start with baseline (ratios are against it)"
for w in $WORKLOADS; do
  case "$w" in tcp | udp) ;; *) die "bad BENCH_FLOW_WORKLOADS entry '$w'" ;; esac
done
for v in RUN_SECONDS ROUNDS FLOW_COUNT TABLE_SIZE FILL_TIMEOUT HOLD_SECONDS COST_SECONDS COST_ROUNDS READY_TIMEOUT; do
  { is_uint "${!v}" && ((${!v} > 0)); } || die "$v (BENCH_FLOW_*) must be a positive integer"
done
for v in QUIET_PCT QUIET_MAX QUIET_BUDGET; do is_uint "${!v}" || die "BENCH_$v must be a non-negative integer"; done
{ is_uint "$UDP_LEN" && ((UDP_LEN >= 16 && UDP_LEN <= 1400)); } || die "BENCH_FLOW_UDP_LEN must be 16 to 1400"
{ is_uint "$CLIENT_CPU" && ((CLIENT_CPU < NCPU)); } || die "BENCH_FLOW_CLIENT_CPU must be below $NCPU"
{ is_uint "$SERVER_CPU" && ((SERVER_CPU < NCPU)); } || die "BENCH_FLOW_SERVER_CPU must be below $NCPU"
((FLOW_COUNT <= 250 * 50000)) || die "BENCH_FLOW_COUNT must be at most 12500000"
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || die "python3 is required"
for tool in ip nsenter iperf3 timeout; do
  command -v "$tool" >/dev/null || die "$tool is required (make bench-deps installs iperf3)"
done

# ---------------------------------------------------------------------------------------------
# State and cleanup.

WORK=$(mktemp -d /tmp/vigil-bench-flows.XXXXXX) || die "mktemp failed"
SOCK=$WORK/vigil.sock
RUNS=$WORK/runs.jsonl
COST_RUNS=$WORK/cost.jsonl
HELPER=$WORK/flows.py
POLICY_DIR=$WORK/policies # empty: the machine's /etc/vigil/policies must not leak in
mkdir -p "$POLICY_DIR"
: >"$RUNS"
: >"$COST_RUNS"
AGENT_PID=
SERVER_PID=
CLIENT_PID=
SENDER_PID=
SINK_PID=
ACTIVE=
CG_DIR=
MOUNTED_BPFFS=0
STATS_SYSCTL=/proc/sys/kernel/bpf_stats_enabled
STATS_RESTORE= # kernel.bpf_stats_enabled's value before the cost part, while that part changed it
NOTES=()
declare -A SKIP_REASON RAN
START=$EPOCHREALTIME

in_ns() { nsenter --net="/run/netns/$NS" -- "$@"; }
helper() { "$PYTHON" "$HELPER" "$@"; }
vigil_cli() { timeout 10 "$CLI" --server "unix://$SOCK" "$@"; }

stop_agent() {
  [[ -n "$AGENT_PID" ]] || return 0
  stop_pid "$AGENT_PID" TERM 15
  AGENT_PID=
  # Whatever the agent left pinned (it pins XDP enforcement on purpose) goes too.
  "$AGENT" --cleanup --pin-dir "$PIN_DIR" >>"$WORK/agent-cleanup.log" 2>&1
  rm -f "$SOCK"
}

teardown_config() {
  case "$ACTIVE" in
    vigil) stop_agent ;;
    nftables) nft delete table inet "$NFT_TABLE" 2>/dev/null ;;
  esac
  ACTIVE=
}

restore_bpf_stats() {
  [[ -n "$STATS_RESTORE" ]] || return 0
  echo "$STATS_RESTORE" >"$STATS_SYSCTL" || log "warning: could not set kernel.bpf_stats_enabled back to $STATS_RESTORE"
  STATS_RESTORE=
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  restore_bpf_stats # first: it must not wait for anything that could hang
  [[ -n "$CLIENT_PID" ]] && stop_pid "$CLIENT_PID" TERM 5
  [[ -n "$SENDER_PID" ]] && stop_pid "$SENDER_PID" TERM 5
  [[ -n "$SINK_PID" ]] && stop_pid "$SINK_PID" TERM 5
  [[ -n "$SERVER_PID" ]] && stop_pid "$SERVER_PID" TERM 5
  ACTIVE=vigil teardown_config
  command -v nft >/dev/null && nft delete table inet "$NFT_TABLE" 2>/dev/null
  ip netns del "$NS" 2>/dev/null # and with it the veth pair
  ip link del "$IF_HOST" 2>/dev/null
  if [[ -n "$CG_DIR" && -d "$CG_DIR" ]]; then
    # Our processes are gone; anything left in the cgroup is a straggler of ours.
    local pid
    while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$CG_DIR/cgroup.procs"
    rmdir "$CG_DIR" 2>/dev/null || { sleep 0.5; rmdir "$CG_DIR" 2>/dev/null; } ||
      log "warning: could not remove cgroup $CG_DIR"
  fi
  ((MOUNTED_BPFFS)) && umount /sys/fs/bpf 2>/dev/null
  rm -rf "$WORK"
  exit "$rc"
}
trap_exit cleanup

# ---------------------------------------------------------------------------------------------
# Python helper: status and counter parsing, the memory part's sender, the summary.

cat >"$HELPER" <<'PY'
import json, os, re, signal, socket, statistics, struct, subprocess, sys, time


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def as_int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def flows_of(status):
    """The FlowStatus of a `vigil status -o json`, with uint64 strings made numbers."""
    f = status.get("flows")
    if not isinstance(f, dict):
        return None
    out = {k: as_int(f.get(k)) for k in ("flows_seen", "flows_lost", "table_entries",
                                         "table_capacity", "table_evictions", "ring_size",
                                         "ring_capacity")}
    out["state"] = f.get("state", "")
    out["interfaces"] = [i.get("name") for i in f.get("interfaces") or []]
    out["modes"] = sorted({i.get("mode", "") for i in f.get("interfaces") or []})
    out["stats"] = {s.get("name"): as_int(s.get("value")) for s in f.get("stats") or []}
    out["cgroup_accounting"] = f.get("cgroup_accounting", "")
    out["attribution"] = f.get("attribution", "")
    return out


def cmd_flows(path):
    print(json.dumps(flows_of(load(path))))


def cmd_ready(path, ifname):
    """Exit status 0 when the agent tracks flows on ifname, 1 while it may still get there, 2
    when it says it cannot (flow state "unavailable: ..."), printed, or has no flows status."""
    st = load(path)
    if not st:
        sys.exit(1)
    f = flows_of(st)
    if f is None:
        print("its status has no flows section")
        sys.exit(2)
    if f["state"].startswith("unavailable"):
        print(f"flow tracking {f['state']}")
        sys.exit(2)
    print(f"flow tracking state '{f['state']}', interfaces {f['interfaces']}")
    sys.exit(0 if f["state"] == "tracking" and ifname in f["interfaces"] else 1)


def cmd_table_entries(path):
    print((flows_of(load(path)) or {}).get("table_entries", 0))


def cmd_nft(path):
    """Counters of the nft table's two chains: {"output": {...}, "input": {...}}."""
    out = {}
    for item in load(path).get("nftables", []):
        r = item.get("rule")
        if not r:
            continue
        for e in r.get("expr", []):
            if "counter" in e:
                out[r.get("chain")] = {"packets": e["counter"]["packets"], "bytes": e["counter"]["bytes"]}
    print(json.dumps(out))


def cgroup_traffic(path, cg):
    """`vigil traffic -o json` rows of our cgroup ("ID:NAME": by id, or by path where the agent
    could name it): {protocol: {"ingress": {...}, "egress": {...}}}."""
    cg_id, cg_name = cg.split(":", 1)
    out = {}
    for r in load(path).get("rows") or []:
        if str(r.get("cgroup_id")) != cg_id and not str(r.get("cgroup_path", "")).rstrip("/").endswith("/" + cg_name):
            continue
        p = out.setdefault(r.get("protocol", "?"), {})
        for d in ("ingress", "egress"):
            c = r.get(d) or {}
            q = p.setdefault(d, {"packets": 0, "bytes": 0, "payload_bytes": 0})
            for k in q:
                q[k] += as_int(c.get(k))
    return out


def proc_mem(pid):
    m = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                m[k.lower() + "_kb"] = int(v.split()[0])
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        m["cpu_seconds"] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    return m


def fd_infos(pid, kind):
    """/proc/PID/fdinfo of the fds pid holds that are anon_inode:KIND (bpf-map, bpf-prog,
    bpf_link), as dicts."""
    out = []
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return out
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}") != "anon_inode:" + kind:
                continue
            info = dict(l.split(":", 1) for l in open(f"/proc/{pid}/fdinfo/{fd}") if ":" in l)
        except OSError:
            continue
        out.append({k.strip(): v.strip() for k, v in info.items()})
    return out


def bpftool_show(what):
    """`bpftool WHAT show -j` (prog or map), [] without bpftool."""
    try:
        return json.loads(subprocess.run(["bpftool", what, "show", "-j"], capture_output=True,
                                         text=True, timeout=30).stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []


def agent_maps(pid):
    """The BPF maps the agent holds open (from /proc/PID/fdinfo), named by bpftool."""
    maps = {}
    for info in fd_infos(pid, "bpf-map"):
        mid = as_int(info.get("map_id"))
        maps[mid] = {"id": mid, "type": as_int(info.get("map_type")),
                     "max_entries": as_int(info.get("max_entries")),
                     "memlock": as_int(info.get("memlock")), "name": None}
    for s in bpftool_show("map"):
        m = maps.get(s.get("id"))
        if m is not None:
            m["name"] = s.get("name")
            m["type"] = s.get("type", m["type"])
            m["bytes_memlock"] = s.get("bytes_memlock", m["memlock"])
    return sorted(maps.values(), key=lambda m: m["id"])


FLOW_PROG = re.compile(r"^vigil_(flow_|cgroup_|sock_|kfree_skb)")


def cmd_progstats(pid):
    """run_cnt and run_time_ns (kept while kernel.bpf_stats_enabled is on) of the agent's flow
    programs: those it holds, as program fds or through links, named as FLOW_PROG says."""
    ids = {as_int(i.get("prog_id")) for i in fd_infos(pid, "bpf-prog") + fd_infos(pid, "bpf_link")}
    out = {}
    for p in bpftool_show("prog"):
        if p.get("id") in ids and FLOW_PROG.match(p.get("name") or ""):
            out[str(p["id"])] = {"name": p["name"], "type": p.get("type"), "run_cnt": p.get("run_cnt", 0),
                                 "run_time_ns": p.get("run_time_ns", 0)}
    print(json.dumps(out))


def cmd_netdev(ifname):
    """The interface's packet and byte counters."""
    d = f"/sys/class/net/{ifname}/statistics"
    print(json.dumps({k: as_int(open(f"{d}/{k}").read()) for k in ("tx_packets", "tx_bytes", "rx_packets", "rx_bytes")}))


def cmd_cost_record(workload, rnd, iperf, progs_b, progs_a, net_b, net_a, busy, stats_on):
    """One run of the cost part as a JSON line: iperf3's figures, the veth's counter deltas and
    each flow program's run count and run time over the run."""
    rec = {"workload": workload, "round": int(rnd)}
    rec.update(json.loads(iperf))
    nb, na = json.loads(net_b or "{}"), json.loads(net_a or "{}")
    rec["veth"] = {k: v - nb.get(k, 0) for k, v in na.items()}
    pb, pa = json.loads(progs_b or "{}"), json.loads(progs_a or "{}")
    rec["progs"] = []
    for prog_id, a in sorted(pa.items(), key=lambda kv: kv[1]["name"]):
        b = pb.get(prog_id, {})
        cnt, ns = a["run_cnt"] - b.get("run_cnt", 0), a["run_time_ns"] - b.get("run_time_ns", 0)
        rec["progs"].append({"name": a["name"], "type": a.get("type"), "run_cnt": cnt, "run_time_ns": ns,
                             "avg_ns": round(ns / cnt, 1) if cnt else None})
    rec["total_run_time_ns"] = sum(p["run_time_ns"] for p in rec["progs"])
    if not rec.get("error") and not rec["total_run_time_ns"]:
        rec["error"] = ("no run time counted (statistics off?)" if pa else
                        "no flow programs of the agent found by `bpftool prog show`")
    rec["stats_on_after"] = stats_on == "1"
    rec["busy_before_pct"] = int(busy) if busy else None
    print(json.dumps(rec))


def cmd_cost_brief():
    """One cost run for the log, from its record on stdin."""
    r = json.loads(sys.stdin.read())
    n = r.get("sent_packets") if r["workload"] == "udp" else r["veth"].get("tx_packets")
    what = "packet" if r["workload"] == "udp" else "GSO packet"
    per = f"{r['total_run_time_ns'] / n:,.0f} ns of BPF per {what}" if n else "nothing sent"
    print(f"{per} ({len(r['progs'])} programs, {r['total_run_time_ns'] / 1e6:,.1f} ms in all)"
          + ("" if r.get("error") is None else f"; error: {r['error']}"))


def cmd_cpu(pid):
    print(proc_mem(pid).get("cpu_seconds", ""))


def cmd_sample(pid, status_path):
    print(json.dumps({"t": time.time(), "proc": proc_mem(pid), "maps": agent_maps(pid),
                      "flows": flows_of(load(status_path))}))


def cmd_iperf(path, workload, udp_len):
    """The figures of one iperf3 -J client run."""
    x = load(path)
    if x.get("error") or "end" not in x:
        print(json.dumps({"error": x.get("error", "no iperf3 output")}))
        return
    e = x["end"]
    s, r = e.get("sum_sent", {}), e.get("sum_received", {})
    out = {"seconds": r.get("seconds") or s.get("seconds"),
           "cpu": e.get("cpu_utilization_percent", {})}
    if workload == "tcp":
        out.update(sent_bytes=s.get("bytes"), received_bytes=r.get("bytes"),
                   bits_per_second=r.get("bits_per_second"), retransmits=s.get("retransmits"))
    else:
        received = r.get("bytes", 0) // int(udp_len)
        out.update(sent_packets=s.get("packets"), received_packets=received,
                   lost_packets=r.get("lost_packets"), sent_bytes=s.get("bytes"),
                   received_bytes=r.get("bytes"),
                   packets_per_second=received / out["seconds"] if out["seconds"] else None,
                   sent_packets_per_second=s.get("packets", 0) / s["seconds"] if s.get("seconds") else None)
    print(json.dumps(out))


def cmd_record(*a):
    """One run as a JSON line."""
    (config, rnd, order, workload, iperf, nft_b, nft_a, st_b, st_a, tr_b, tr_a, cg_name, waited, busy,
     tc_b, tc_a, agent_cpu) = a
    rec = {"config": config, "round": int(rnd), "order": int(order), "workload": workload}
    rec.update(json.loads(iperf))
    nb, na = json.loads(nft_b or "{}"), json.loads(nft_a or "{}")
    if na:
        rec["nft"] = {c: {k: na[c][k] - nb.get(c, {}).get(k, 0) for k in ("packets", "bytes")} for c in na}
    fb, fa = flows_of(load(st_b)), flows_of(load(st_a))
    if fa is not None:
        rec["vigil"] = {"flows_seen": fa["flows_seen"] - (fb or {}).get("flows_seen", 0),
                        "table_entries": fa["table_entries"], "flows_lost": fa["flows_lost"] - (fb or {}).get("flows_lost", 0),
                        "interfaces": fa["interfaces"], "modes": fa["modes"], "state": fa["state"],
                        "stats": {k: v - (fb or {}).get("stats", {}).get(k, 0) for k, v in fa["stats"].items()}}
    elif load(st_a):
        rec["vigil"] = {"error": "no flows section in vigil status"}
    if fa is not None and load(tr_a):
        tb, ta = cgroup_traffic(tr_b, cg_name), cgroup_traffic(tr_a, cg_name)
        rec["vigil"]["cgroup_traffic"] = {
            p: {d: {k: v - tb.get(p, {}).get(d, {}).get(k, 0) for k, v in c.items()} for d, c in dirs.items()}
            for p, dirs in ta.items()}
    cpu = agent_cpu.split()
    if len(cpu) == 2:
        rec["agent_cpu_seconds"] = float(cpu[1]) - float(cpu[0])
    rec["quiet_wait_seconds"] = int(waited or 0)
    rec["busy_before_pct"] = int(busy) if busy else None
    rec["tc_attached"] = {"before": tc_b, "after": tc_a}
    print(json.dumps(rec))


def cmd_sink(addr, port):
    """Holds a UDP socket open (the memory part's frames land in it, so no ICMP goes back)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind((addr, int(port)))
    print("ok", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def cmd_send(ifname, dst_mac, src_mac, dst_ip, base_ip, dport, count, interval):
    """Sends `count` UDP frames from distinct (source address, source port) pairs, as raw
    frames on ifname, over and over (every `interval` s) until SIGTERM: one active flow each.
    Source ports 10000-59999, then the next source address."""
    count, interval = int(count), float(interval)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    base = struct.unpack("!I", socket.inet_aton(base_ip))[0]
    dst = socket.inet_aton(dst_ip)
    payload = b"vigil-flows"
    frames = []
    for i in range(count):
        src = struct.pack("!I", base + i // 50000)
        udp = struct.pack("!HHHH", 10000 + i % 50000, int(dport), 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        frames.append(eth + ip + udp)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    passes = 0
    while True:
        t0 = time.monotonic()
        for f in frames:
            while True:
                try:
                    s.send(f)
                    break
                except BlockingIOError:
                    time.sleep(0.001)
                except OSError as e:  # ENOBUFS: the peer's backlog is full
                    time.sleep(0.001)
        passes += 1
        print(f"pass {passes} {time.monotonic() - t0:.2f}", flush=True)
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))


def cmd_brief():
    """One run's result for the log, from its record on stdin."""
    r = json.loads(sys.stdin.read())
    if r.get("bits_per_second"):
        print(f"{r['bits_per_second'] / 1e9:.2f} Gbit/s")
    elif r.get("packets_per_second"):
        print(f"{r['packets_per_second']:,.0f} packets/s received ({r.get('sent_packets_per_second') or 0:,.0f} sent)")
    else:
        print(f"error: {r.get('error')}")


COMMANDS = {"brief": cmd_brief, "flows": cmd_flows, "ready": cmd_ready, "table-entries": cmd_table_entries,
            "nft": cmd_nft, "sample": cmd_sample, "iperf": cmd_iperf, "record": cmd_record,
            "sink": cmd_sink, "send": cmd_send, "cpu": cmd_cpu, "progstats": cmd_progstats,
            "netdev": cmd_netdev, "cost-record": cmd_cost_record, "cost-brief": cmd_cost_brief}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
PY

# ---------------------------------------------------------------------------------------------
# Preconditions.

bench_lock

build() { cmake --build "$BUILD_DIR" --target "$@" -j "$(nproc)" >"$WORK/build.log" 2>&1; }
if [[ ! -x "$AGENT" || ! -x "$CLI" ]]; then
  log "building vigil-agent and vigil"
  build vigil-agent vigil || log "warning: cannot build the agent or the CLI: $(grep -m1 -i error "$WORK/build.log")"
fi
AGENT_SKIP=
if [[ ! -x "$AGENT" ]]; then
  AGENT_SKIP="agent binary $AGENT not found (build it first)"
elif [[ ! -x "$CLI" ]]; then
  AGENT_SKIP="CLI $CLI not found (build it first): the agent's readiness and counters come from \`vigil status\`"
elif [[ "$("$AGENT" --help 2>&1)" != *--flow-interfaces* ]]; then
  AGENT_SKIP="this vigil-agent has no --flow-interfaces (flow tracking not in this build)"
fi
for c in $CONFIGS; do
  case "$c" in
    vigil) [[ -z "$AGENT_SKIP" ]] || SKIP_REASON[$c]=$AGENT_SKIP ;;
    nftables) command -v nft >/dev/null || SKIP_REASON[$c]="nft not installed (Debian package nftables)" ;;
  esac
done
MEMORY_SKIP=
has_part memory || MEMORY_SKIP="not in BENCH_FLOW_PARTS"
[[ -z "$MEMORY_SKIP" && -n "$AGENT_SKIP" ]] && MEMORY_SKIP="not measured yet: $AGENT_SKIP"
[[ -z "$MEMORY_SKIP" ]] && ! command -v bpftool >/dev/null &&
  NOTES+=("bpftool is missing: the agent's maps are listed from /proc/PID/fdinfo, without names.")
COST_SKIP=
if ! has_part cost; then
  COST_SKIP="not in BENCH_FLOW_PARTS"
elif [[ -n "$AGENT_SKIP" ]]; then
  COST_SKIP="not measured yet: $AGENT_SKIP"
elif ! command -v bpftool >/dev/null; then
  COST_SKIP="not measured: bpftool is required (it names the programs and reads their statistics)"
elif [[ ! -w "$STATS_SYSCTL" ]]; then
  COST_SKIP="not measured: this kernel has no writable kernel.bpf_stats_enabled"
fi

# Our own bpffs, visible only in this mount namespace.
mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs on /sys/fs/bpf"
MOUNTED_BPFFS=1

# The client's cgroup (cgroup v2, wherever it is mounted). nft resolves a cgroup path against
# /sys/fs/cgroup, so it gets the path relative to that; the level is the depth below the root.
CG_ROOT=$(cgroup2_mount) || die "no cgroup v2 mount in /proc/self/mountinfo"
CG_NAME=vigil-bench-flows-$$
CG_DIR=$CG_ROOT/$CG_NAME
mkdir "$CG_DIR" || { CG_DIR=; die "cannot create cgroup $CG_ROOT/$CG_NAME"; }
CG_ID=$(stat -c %i "$CG_DIR") # a cgroup v2 id is its directory's inode number
CG_LEVEL=1
NFT_CGROUP=$(realpath -m --relative-to=/sys/fs/cgroup "$CG_DIR")

# ---------------------------------------------------------------------------------------------
# The network: the host end is the one the agent tracks.

ip netns del "$NS" 2>/dev/null
ip link del "$IF_HOST" 2>/dev/null
ip netns add "$NS" || die "cannot create network namespace $NS"
ip link add "$IF_HOST" type veth peer name "$IF_NS" netns "$NS" || die "cannot create the veth pair"
ip addr add "$ADDR_HOST/$PREFIX" dev "$IF_HOST"
ip -n "$NS" addr add "$ADDR_NS/$PREFIX" dev "$IF_NS"
ip link set "$IF_HOST" up
ip -n "$NS" link set "$IF_NS" up
ip -n "$NS" link set lo up
MAC_HOST=$(cat "/sys/class/net/$IF_HOST/address")
MAC_NS=$(in_ns ip -j link show "$IF_NS" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
for ((i = 0; i < 50; i++)); do # wait for the link (and DAD-free IPv4) to be usable
  in_ns ping -c1 -W1 -q "$ADDR_HOST" >/dev/null 2>&1 && break
  sleep 0.1
done
log "veth $IF_HOST (host, tracked) <-> $IF_NS ($NS); client cgroup $CG_DIR"

# What is attached to the host end's tc hooks (tcx links and clsact filters), one line.
tc_attached() {
  local out
  out=$(bpftool net show dev "$IF_HOST" 2>/dev/null | awk '/^(tc|tcx)/ {p = 1; next} /^[a-z]/ {p = 0} p && NF' |
    paste -sd';' -)
  echo "${out:-}"
}

start_server() {
  [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null && return 0
  [[ -n "$SERVER_PID" ]] && { wait "$SERVER_PID" 2>/dev/null; log "iperf3 server had exited; restarting it"; }
  # nsenter itself, not in_ns: a backgrounded function would be a subshell, and $! its pid.
  nsenter --net="/run/netns/$NS" -- iperf3 -s -B "$ADDR_NS" -p "$IPERF_PORT" -A "$SERVER_CPU" \
    >>"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for ((i = 0; i < 50; i++)); do
    in_ns ss -Hltn "sport = :$IPERF_PORT" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

# vigil-agent tracking the host end; ready once its status says so. Extra flags as arguments.
start_agent() {
  local -a args=(--api "unix://$SOCK" --policy-dir "$POLICY_DIR" --pin-dir "$PIN_DIR"
    --flow-interfaces "$IF_HOST" "$@")
  # shellcheck disable=SC2206
  [[ -n "$AGENT_EXTRA_ARGS" ]] && args+=($AGENT_EXTRA_ARGS)
  AGENT_CMD="vigil-agent ${args[*]}"
  AGENT_CMD=${AGENT_CMD//$WORK/\$TMP}
  rm -f "$SOCK"
  "$AGENT" "${args[@]}" >"$WORK/agent.log" 2>&1 &
  AGENT_PID=$!
  local deadline=$((SECONDS + READY_TIMEOUT)) state="no answer to vigil status" rc
  while ((SECONDS < deadline)); do
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
      wait "$AGENT_PID" 2>/dev/null
      AGENT_PID=
      SETUP_ERROR="vigil-agent exited during start-up: $(tail -n 3 "$WORK/agent.log" | tr '\n' ' ')"
      return 1
    fi
    if vigil_cli status -o json >"$WORK/status-ready.json" 2>/dev/null; then
      state=$(helper ready "$WORK/status-ready.json" "$IF_HOST")
      rc=$?
      ((rc == 0)) && return 0
      ((rc == 2)) && break
    fi
    sleep 0.2
  done
  SETUP_ERROR="vigil-agent does not track $IF_HOST: $state"
  log "the agent's first warnings and errors:"
  grep -m 8 -E ' (warn|error) ' "$WORK/agent.log" | cut -c 1-300 >&2
  stop_agent
  return 1
}

setup_baseline() { ACTIVE=baseline; }
setup_vigil() { ACTIVE=vigil; start_agent; }
setup_nftables() {
  ACTIVE=nftables
  if ! nft -f - 2>"$WORK/nft.err" <<EOF; then
table inet $NFT_TABLE {
  chain output {
    type filter hook output priority 0; policy accept;
    socket cgroupv2 level $CG_LEVEL "$NFT_CGROUP" counter
  }
  chain input {
    type filter hook input priority 0; policy accept;
    socket cgroupv2 level $CG_LEVEL "$NFT_CGROUP" counter
  }
}
EOF
    SETUP_ERROR="nft failed: $(head -c 300 "$WORK/nft.err")"
    return 1
  fi
}

nft_counters() {
  [[ "$ACTIVE" == nftables ]] || { echo '{}'; return; }
  nft -j list table inet "$NFT_TABLE" >"$WORK/nft.json" 2>/dev/null
  helper nft "$WORK/nft.json"
}

agent_status() { # status-file traffic-file; empty files when no agent answers
  : >"$1"
  : >"$2"
  [[ "$ACTIVE" == vigil ]] || return 0
  vigil_cli status -o json >"$1" 2>/dev/null
  vigil_cli traffic -o json >"$2" 2>/dev/null # all rows: a cgroup's path may be unknown to it
  return 0
}

# The iperf3 client, from the client's cgroup, for $2 seconds; its JSON in $WORK/iperf.json.
iperf_client() { # workload seconds
  local -a args=(-c "$ADDR_NS" -p "$IPERF_PORT" -A "$CLIENT_CPU" -t "$2" -J)
  [[ "$1" == udp ]] && args+=(-u -l "$UDP_LEN" -b 0)
  # The client joins the cgroup before it execs, so every packet it sends is the cgroup's.
  sh -c 'echo $$ >"$1" && shift && exec "$@"' sh "$CG_DIR/cgroup.procs" \
    timeout -k 5 $(($2 + 20)) iperf3 "${args[@]}" >"$WORK/iperf.json" 2>"$WORK/iperf.err" &
  CLIENT_PID=$!
  wait "$CLIENT_PID"
  CLIENT_PID=
}

# One iperf3 run from the client's cgroup; appends its record to RUNS.
iperf_run() { # config round order workload
  local config=$1 round=$2 order=$3 workload=$4 nft_before nft_after tc_before tc_after agent_cpu=
  start_server || log "warning: the iperf3 server is not listening"
  wait_machine_quiet # nothing of ours is busy now: an idle server and at most an idle agent
  tc_before=$(tc_attached)
  nft_before=$(nft_counters)
  agent_status "$WORK/status-before.json" "$WORK/traffic-before.json"
  [[ "$ACTIVE" == vigil ]] && agent_cpu=$(helper cpu "$AGENT_PID")
  iperf_client "$workload" "$RUN_SECONDS"
  # The agent's CPU time over the run alone (without the status calls around it).
  [[ -n "$agent_cpu" ]] && agent_cpu+=" $(helper cpu "$AGENT_PID")"
  nft_after=$(nft_counters)
  agent_status "$WORK/status-after.json" "$WORK/traffic-after.json"
  tc_after=$(tc_attached)
  helper record "$config" "$round" "$order" "$workload" \
    "$(helper iperf "$WORK/iperf.json" "$workload" "$UDP_LEN")" "$nft_before" "$nft_after" \
    "$WORK/status-before.json" "$WORK/status-after.json" "$WORK/traffic-before.json" \
    "$WORK/traffic-after.json" "$CG_ID:$CG_NAME" "$WAITED" "${BUSY_BEFORE:-}" \
    "$tc_before" "$tc_after" "$agent_cpu" >>"$RUNS"
  log "  $workload: $(tail -n 1 "$RUNS" | helper brief)"
}

# ---------------------------------------------------------------------------------------------
# Part 1: throughput, every configuration once per round, the order rotated every round.

if has_part throughput; then
  throughput_runs() { # config round order
    local w
    for w in $WORKLOADS; do iperf_run "$1" "$2" "$3" "$w"; done
  }
  run_rotated_rounds "$ROUNDS" "$CONFIGS" throughput_runs
  [[ -n "${RAN[vigil]:-}" ]] && VIGIL_CMD=$AGENT_CMD
fi

# ---------------------------------------------------------------------------------------------
# Part 2: the agent's memory with FLOW_COUNT active flows.

echo '{}' >"$WORK/memory.json"
if [[ -z "$MEMORY_SKIP" ]]; then
  log "memory: vigil-agent --flow-table-size $TABLE_SIZE, then $FLOW_COUNT flows"
  ACTIVE=vigil
  if ! start_agent --flow-table-size "$TABLE_SIZE"; then
    MEMORY_SKIP="not measured: $SETUP_ERROR"
  else
    MEM_CMD=$AGENT_CMD
    sleep 3 # start-up work (procfs scan, first table scan) settles
    vigil_cli status -o json >"$WORK/status-mem0.json" 2>/dev/null
    helper sample "$AGENT_PID" "$WORK/status-mem0.json" >"$WORK/mem-before.json"
    "$PYTHON" "$HELPER" sink "$ADDR_HOST" "$SINK_PORT" >"$WORK/sink.out" 2>&1 &
    SINK_PID=$!
    # Sources 10.204.1.1 and up: on the veth's own subnet, so nothing could be routed elsewhere.
    nsenter --net="/run/netns/$NS" -- "$PYTHON" "$HELPER" send "$IF_NS" "$MAC_HOST" "$MAC_NS" "$ADDR_HOST" 10.204.1.1 \
      "$SINK_PORT" "$FLOW_COUNT" 2 >"$WORK/sender.out" 2>&1 &
    SENDER_PID=$!
    fill_start=$EPOCHREALTIME
    deadline=$((SECONDS + FILL_TIMEOUT))
    entries=0
    while ((SECONDS < deadline)); do
      kill -0 "$SENDER_PID" 2>/dev/null || break
      if vigil_cli status -o json >"$WORK/status-mem1.json" 2>/dev/null; then
        entries=$(helper table-entries "$WORK/status-mem1.json")
        ((entries >= FLOW_COUNT)) && break
      fi
      sleep 1
    done
    FILL_SECONDS=$("$PYTHON" -c "print(round(${EPOCHREALTIME/,/.} - ${fill_start/,/.}, 1))")
    if ((entries >= FLOW_COUNT)); then
      sleep "$HOLD_SECONDS" # more passes of the sender and scans of the agent at full size
      vigil_cli status -o json >"$WORK/status-mem1.json" 2>/dev/null
      log "memory: $entries table entries after ${FILL_SECONDS}s"
    else
      MEMORY_NOTE="the agent's table reached only $entries of $FLOW_COUNT entries within ${FILL_TIMEOUT}s (sender: $(tail -n 2 "$WORK/sender.out" | tr '\n' ' '))"
      log "memory: $MEMORY_NOTE"
    fi
    helper sample "$AGENT_PID" "$WORK/status-mem1.json" >"$WORK/mem-after.json"
    stop_pid "$SENDER_PID" TERM 5
    SENDER_PID=
    stop_pid "$SINK_PID" TERM 5
    SINK_PID=
    "$PYTHON" - "$WORK" "$FLOW_COUNT" "$TABLE_SIZE" "$FILL_SECONDS" "${MEMORY_NOTE:-}" "$MEM_CMD" \
      "$(grep -c '^pass' "$WORK/sender.out")" "$HOLD_SECONDS" >"$WORK/memory.json" <<'PY'
import json, sys
work, count, size, fill, note, cmd, passes, hold = sys.argv[1:9]
b, a = json.load(open(f"{work}/mem-before.json")), json.load(open(f"{work}/mem-after.json"))
print(json.dumps({"flows": int(count), "table_size": int(size), "fill_seconds": float(fill),
                  "note": note or None, "agent": cmd, "sender_passes": int(passes), "hold_seconds": int(hold),
                  "before": b, "after": a}))
PY
  fi
  teardown_config
fi
[[ -n "$MEMORY_SKIP" ]] && log "memory: $MEMORY_SKIP"

# ---------------------------------------------------------------------------------------------
# Part 3: the in-kernel cost of the flow programs per packet, from the kernel's BPF run-time
# statistics (run_cnt, run_time_ns per program), which count only while they are on.

# One iperf3 run of the cost part; appends its record to COST_RUNS. It does not wait for a quiet
# machine (the figures hardly depend on it), but records how busy the machine was just before.
cost_run() { # workload round
  local progs_before net_before busy
  start_server || log "warning: the iperf3 server is not listening"
  busy=$(machine_busy_pct)
  net_before=$(helper netdev "$IF_HOST")
  progs_before=$(helper progstats "$AGENT_PID")
  iperf_client "$1" "$COST_SECONDS"
  sleep 0.2 # the server reads what is still queued for it
  helper cost-record "$1" "$2" "$(helper iperf "$WORK/iperf.json" "$1" "$UDP_LEN")" "$progs_before" \
    "$(helper progstats "$AGENT_PID")" "$net_before" "$(helper netdev "$IF_HOST")" "$busy" \
    "$(cat "$STATS_SYSCTL")" >>"$COST_RUNS"
  log "  $1: $(tail -n 1 "$COST_RUNS" | helper cost-brief)"
}

STATS_BEFORE=$(cat "$STATS_SYSCTL" 2>/dev/null)
COST_START=$EPOCHREALTIME
if [[ -z "$COST_SKIP" ]]; then
  if [[ "$STATS_BEFORE" != 1 ]]; then
    STATS_RESTORE=$STATS_BEFORE
    echo 1 >"$STATS_SYSCTL" || COST_SKIP="not measured: cannot set kernel.bpf_stats_enabled=1"
  fi
fi
if [[ -z "$COST_SKIP" ]]; then
  log "cost: kernel.bpf_stats_enabled=1 (was $STATS_BEFORE), $COST_ROUNDS rounds of $WORKLOADS, ${COST_SECONDS}s each"
  ACTIVE=vigil
  if ! start_agent; then
    COST_SKIP="not measured: $SETUP_ERROR"
  else
    COST_CMD=$AGENT_CMD
    sleep 1 # start-up work settles
    for ((round = 1; round <= COST_ROUNDS; round++)); do
      log "cost round $round/$COST_ROUNDS"
      for w in $WORKLOADS; do cost_run "$w" "$round"; done
    done
  fi
  teardown_config
fi
restore_bpf_stats
COST_DURATION=$("$PYTHON" -c "print(round(${EPOCHREALTIME/,/.} - ${COST_START/,/.}))")
[[ -n "$COST_SKIP" ]] && log "cost: $COST_SKIP"

# ---------------------------------------------------------------------------------------------
# Output.

commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo none)
[[ -n "$(git -C "$REPO_DIR" status --porcelain 2>/dev/null | head -n1)" ]] && commit+="+dirty"
for c in "${!SKIP_REASON[@]}"; do printf '%s\t%s\n' "$c" "${SKIP_REASON[$c]}"; done >"$WORK/skips.tsv"
printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}" >"$WORK/notes.txt"
printf '%s' "$MEMORY_SKIP" >"$WORK/memory.skip"
printf '%s' "$COST_SKIP" >"$WORK/cost.skip"
cat >"$WORK/meta.json" <<EOF
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "commit": "$commit",
  "kernel": "$(uname -r)",
  "cpus": $NCPU,
  "cpu_model": "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)",
  "iperf3": "$(iperf3 --version 2>/dev/null | head -n 1)",
  "nft": "$(nft -v 2>/dev/null)",
  "parts": "$PARTS", "configs": "$CONFIGS", "workloads": "$WORKLOADS", "rounds": $ROUNDS, "seconds_per_run": $RUN_SECONDS,
  "udp_len": $UDP_LEN, "client_cpu": $CLIENT_CPU, "server_cpu": $SERVER_CPU,
  "veth": "$IF_HOST (host, tracked) <-> $IF_NS (netns $NS), $ADDR_HOST -> $ADDR_NS",
  "offloads": "$(ethtool -k "$IF_HOST" 2>/dev/null | awk '/^(tcp-segmentation-offload|generic-receive-offload|generic-segmentation-offload):/ {printf "%s%s %s", sep, $1, $2; sep = ", "}')",
  "cgroup": "$CG_ROOT/vigil-bench-flows-PID",
  "nft_rule": "table inet $NFT_TABLE: output and input chains (priority 0), socket cgroupv2 level $CG_LEVEL \"$NFT_CGROUP\" counter",
  "vigil_agent": "${VIGIL_CMD:-}",
  "cost_agent": "${COST_CMD:-}", "cost_rounds": $COST_ROUNDS, "cost_seconds": $COST_SECONDS,
  "cost_duration_seconds": $COST_DURATION,
  "bpf_stats_enabled_before": "$STATS_BEFORE", "bpf_stats_enabled_after": "$(cat "$STATS_SYSCTL" 2>/dev/null)",
  "srso": "$(cat /sys/devices/system/cpu/vulnerabilities/spec_rstack_overflow 2>/dev/null)",
  "quiet_pct": $QUIET_PCT, "quiet_max": $QUIET_MAX, "quiet_budget": $QUIET_BUDGET, "quiet_spent": $QUIET_SPENT,
  "loadavg_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
  "duration_seconds": $("$PYTHON" -c "print(round(${EPOCHREALTIME/,/.} - ${START/,/.}))")
}
EOF
cat >"$WORK/summarize.py" <<'PY'
import json, statistics, sys

work, out_json, out_md = sys.argv[1:4]
meta = json.load(open(f"{work}/meta.json"))
runs = [json.loads(l) for l in open(f"{work}/runs.jsonl") if l.strip()]
skips = dict(l.rstrip("\n").split("\t", 1) for l in open(f"{work}/skips.tsv") if "\t" in l)
notes = [l.rstrip("\n") for l in open(f"{work}/notes.txt") if l.strip()]
memory = json.load(open(f"{work}/memory.json"))
memory_skip = open(f"{work}/memory.skip").read().strip() or None
cost_runs = [json.loads(l) for l in open(f"{work}/cost.jsonl") if l.strip()]
cost_skip = open(f"{work}/cost.skip").read().strip() or None

TARGET = 0.95  # Vigil's TCP throughput over the baseline's, at least
COUNT_OK = (0.95, 1.10)  # a counter over what iperf3 sent (its control connection counts too)
METRIC = {"tcp": ("bits_per_second", "TCP throughput", "Gbit/s", 1e9, 2),
          "udp": ("packets_per_second", f"UDP packet rate ({meta['udp_len']}-byte payload), received", "packets/s", 1, 0)}
configs = meta["configs"].split()
workloads = meta["workloads"].split()


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt(v, digits=0, scale=1):
    return "-" if v is None else f"{v / scale:,.{digits}f}"


def ratio(a, b):
    return a / b if a is not None and b else None


def vigil_ratio(r):
    """Vigil's per-cgroup egress counter over what iperf3 says the client sent: payload bytes for
    TCP, UDP packets for UDP."""
    t = ((r.get("vigil") or {}).get("cgroup_traffic") or {}).get(r["workload"], {}).get("egress")
    if not t:
        return None
    if r["workload"] == "tcp":
        return ratio(t["payload_bytes"], r.get("sent_bytes"))
    return ratio(t["packets"], r.get("sent_packets"))


def per_cpu(r, key):
    """The run's figure per CPU-second of the iperf3 client and server (their user + system time,
    which holds most of the packet processing: veth delivers in the sender's own context)."""
    c = r.get("cpu") or {}
    if r.get(key) is None or c.get("host_total") is None or c.get("remote_total") is None:
        return None
    return ratio(r[key], (c["host_total"] + c["remote_total"]) / 100)


def nft_ratio(r):
    """nft's output counter over what iperf3 says the client sent (bytes for TCP, packets for UDP)."""
    out = (r.get("nft") or {}).get("output")
    if not out:
        return None
    if r["workload"] == "tcp":
        return ratio(out["bytes"], r.get("sent_bytes"))
    return ratio(out["packets"], r.get("sent_packets"))


rows = []
for w in workloads:
    key, _, _, _, _ = METRIC[w]
    base = {r["round"]: r.get(key) for r in runs if r["workload"] == w and r["config"] == "baseline"}
    base_med = med(base.values())
    base_eff = {r["round"]: per_cpu(r, key) for r in runs if r["workload"] == w and r["config"] == "baseline"}
    for c in configs:
        rs = [r for r in runs if r["workload"] == w and r["config"] == c]
        if not rs:
            continue
        vals = [r.get(key) for r in rs if r.get(key)]
        row = {"workload": w, "config": c, "runs": len(rs), "errors": [r["error"] for r in rs if r.get("error")],
               "median": med(vals), "min": min(vals, default=None), "max": max(vals, default=None)}
        row["vs_baseline"] = ratio(row["median"], base_med)
        row["paired"] = med([ratio(r.get(key), base.get(r["round"])) for r in rs])
        row["per_cpu_second"] = med([per_cpu(r, key) for r in rs])
        row["per_cpu_paired"] = med([ratio(per_cpu(r, key), base_eff.get(r["round"])) for r in rs])
        row["busy_before_pct"] = med([r.get("busy_before_pct") for r in rs])
        row["agent_cpu_pct"] = med([100 * r["agent_cpu_seconds"] / r["seconds"] for r in rs
                                    if r.get("agent_cpu_seconds") is not None and r.get("seconds")])
        row["client_cpu_pct"] = med([(r.get("cpu") or {}).get("host_total") for r in rs])
        row["server_cpu_pct"] = med([(r.get("cpu") or {}).get("remote_total") for r in rs])
        if w == "udp":
            row["sent_pps"] = med([r.get("sent_packets_per_second") for r in rs])
            row["loss_pct"] = med([100 * ratio(r.get("lost_packets"), r.get("sent_packets")) for r in rs
                                   if ratio(r.get("lost_packets"), r.get("sent_packets")) is not None])
        if w == "tcp":
            row["retransmits"] = sum(r.get("retransmits") or 0 for r in rs)
        if c == "nftables":
            nr = [nft_ratio(r) for r in rs]
            row["nft_ratio"] = med(nr)
            row["nft_ratio_min"] = min([x for x in nr if x is not None], default=None)
            row["nft_ratio_max"] = max([x for x in nr if x is not None], default=None)
        if c == "vigil":
            seen = [(r.get("vigil") or {}).get("flows_seen") for r in rs]
            row["flows_seen_min"] = min([x for x in seen if x is not None], default=None)
            row["table_entries"] = med([(r.get("vigil") or {}).get("table_entries") for r in rs])
            row["vigil_errors"] = sorted({(r.get("vigil") or {}).get("error", "no status") for r in rs
                                          if not r.get("vigil") or r["vigil"].get("error")})
            row["modes"] = sorted({m for r in rs for m in (r.get("vigil") or {}).get("modes", [])})
            vr = [vigil_ratio(r) for r in rs]
            row["vigil_ratio"] = med(vr)
            row["vigil_ratio_min"] = min([x for x in vr if x is not None], default=None)
            row["vigil_ratio_max"] = max([x for x in vr if x is not None], default=None)
        rows.append(row)


def row_of(w, c):
    return next((r for r in rows if r["workload"] == w and r["config"] == c), None)


# --- targets and checks ---------------------------------------------------------------------
targets = []
v = row_of("tcp", "vigil")
if "throughput" not in meta["parts"].split():
    targets.append({"name": "vigil-tcp", "result": "NOT RUN", "detail": "the throughput part is not in BENCH_FLOW_PARTS"})
elif "tcp" not in workloads or "vigil" not in configs:
    targets.append({"name": "vigil-tcp", "result": "NOT RUN", "detail": "tcp or vigil not configured"})
elif v is None or v["paired"] is None:
    targets.append({"name": "vigil-tcp", "result": "NOT RUN",
                    "detail": skips.get("vigil") or "no Vigil TCP run with a baseline run in its round"})
else:
    targets.append({"name": "vigil-tcp", "result": "PASS" if v["paired"] >= TARGET else "FAIL",
                    "detail": f"median of per-round ratios {v['paired']:.3f} (ratio of medians {fmt(v['vs_baseline'], 3)}; "
                              f"Vigil {fmt(v['median'], 2, 1e9)} Gbit/s, baseline {fmt(row_of('tcp', 'baseline')['median'], 2, 1e9)} Gbit/s)"})
checks = []
for w in workloads:
    v = row_of(w, "vigil")
    if v is not None:
        ok = v["flows_seen_min"] is not None and v["flows_seen_min"] > 0 and not v["vigil_errors"]
        checks.append({"name": f"vigil-saw-{w}", "result": "ok" if ok else "NOT SEEN",
                       "detail": f"flows_seen during each run: at least {fmt(v['flows_seen_min'])}; table entries after a run "
                                 f"(median) {fmt(v['table_entries'])}" + (f"; {', '.join(v['vigil_errors'])}" if v["vigil_errors"] else "")})
        what = "payload bytes" if w == "tcp" else "packets"
        ok = v["vigil_ratio_min"] is not None and COUNT_OK[0] <= v["vigil_ratio_min"] and v["vigil_ratio_max"] <= COUNT_OK[1]
        checks.append({"name": f"vigil-counted-{w}", "result": "ok" if ok else ("MISMATCH" if v["vigil_ratio"] else "NOT MEASURED"),
                       "detail": f"`vigil traffic` egress {what} of the client's cgroup / iperf3 {what} sent: median "
                                 f"{fmt(v['vigil_ratio'], 3)} (min {fmt(v['vigil_ratio_min'], 3)}, max {fmt(v['vigil_ratio_max'], 3)}; "
                                 f"expected {COUNT_OK[0]}-{COUNT_OK[1]})"})
    n = row_of(w, "nftables")
    if n is not None:
        ok = n["nft_ratio_min"] is not None and COUNT_OK[0] <= n["nft_ratio_min"] and n["nft_ratio_max"] <= COUNT_OK[1]
        what = "bytes" if w == "tcp" else "packets"
        checks.append({"name": f"nft-counted-{w}", "result": "ok" if ok else "MISMATCH",
                       "detail": f"nft output counter / iperf3 {what} sent: median {fmt(n['nft_ratio'], 3)} "
                                 f"(min {fmt(n['nft_ratio_min'], 3)}, max {fmt(n['nft_ratio_max'], 3)}; expected {COUNT_OK[0]}-{COUNT_OK[1]})"})
foreign = sorted({f"{r['config']} round {r['round']}: {r['tc_attached']['before']}" for r in runs
                  if r["config"] != "vigil" and (r.get("tc_attached") or {}).get("before")})
if foreign:
    notes.append("Programs were attached to the tracked veth end during runs without Vigil (another agent on the machine?): "
                 + "; ".join(foreign))


# --- memory ---------------------------------------------------------------------------------
def flow_maps(sample):
    return [m for m in sample.get("maps", []) if (m.get("name") or "").startswith("vigil_flow")]


def mem_summary():
    if memory_skip or not memory:
        return None
    b, a = memory["before"], memory["after"]
    fb, fa = b.get("flows") or {}, a.get("flows") or {}
    out = {k: {"before": b["proc"].get(k), "after": a["proc"].get(k)} for k in ("vmrss_kb", "vmhwm_kb", "rssanon_kb")}
    out["agent_cpu_seconds"] = (a["proc"].get("cpu_seconds") or 0) - (b["proc"].get("cpu_seconds") or 0)
    out["flow_maps_memlock"] = {"before": sum(m.get("bytes_memlock", m["memlock"]) for m in flow_maps(b)),
                                "after": sum(m.get("bytes_memlock", m["memlock"]) for m in flow_maps(a))}
    out["all_maps_memlock"] = {"before": sum(m.get("bytes_memlock", m["memlock"]) for m in b.get("maps", [])),
                               "after": sum(m.get("bytes_memlock", m["memlock"]) for m in a.get("maps", []))}
    out["table"] = {k: fa.get(k) for k in ("table_entries", "table_capacity", "table_evictions", "flows_seen", "flows_lost",
                                           "ring_size", "ring_capacity")}
    out["table_before"] = {k: fb.get(k) for k in ("table_entries", "flows_seen")}
    return out


mem = mem_summary()


# --- in-kernel cost -------------------------------------------------------------------------
# What a workload's figures are per: UDP, the datagrams iperf3 sent; TCP, the packets the host
# end of the veth sent (GSO packets: one skb of up to 64 KiB each, as the programs see them).
COST_UNIT = {"udp": ("packet", lambda r: r.get("sent_packets")),
             "tcp": ("GSO packet", lambda r: r["veth"].get("tx_packets"))}


def spread(v):
    v = [x for x in v if x is not None]
    return {"median": med(v), "min": min(v, default=None), "max": max(v, default=None)}


def cost_summary(w):
    rs = [r for r in cost_runs if r["workload"] == w and not r.get("error") and COST_UNIT[w][1](r)]
    if not rs:
        return None
    unit, count = COST_UNIT[w]
    progs = {}
    for r in rs:
        for p in r["progs"]:
            progs.setdefault(p["name"], {"type": p.get("type"), "runs": []})["runs"].append((r, p))
    out = {"workload": w, "unit": unit, "rounds": len(rs), "programs": []}
    for name, e in sorted(progs.items()):
        out["programs"].append({
            "name": name, "type": e["type"],
            "run_cnt": med([p["run_cnt"] for _, p in e["runs"]]),
            "runs_per_unit": med([p["run_cnt"] / count(r) for r, p in e["runs"]]),
            "avg_ns": spread([p["avg_ns"] for _, p in e["runs"]]),
            "ns_per_unit": med([p["run_time_ns"] / count(r) for r, p in e["runs"]])})
    out["units"] = med([count(r) for r in rs])
    out["ns_per_unit"] = spread([r["total_run_time_ns"] / count(r) for r in rs])
    out["ns_per_unit_by_round"] = [round(r["total_run_time_ns"] / count(r)) for r in rs]
    out["veth_tx_packets"] = med([r["veth"].get("tx_packets") for r in rs])
    out["sent_packets_per_second"] = med([r.get("sent_packets_per_second") for r in rs])
    if w == "tcp":
        out["payload_bytes_per_unit"] = med([r["sent_bytes"] / count(r) for r in rs if r.get("sent_bytes")])
        out["ns_per_kib"] = spread([r["total_run_time_ns"] / (r["sent_bytes"] / 1024) for r in rs if r.get("sent_bytes")])
        out["bits_per_second"] = med([r.get("bits_per_second") for r in rs])
    out["busy_before_pct"] = med([r.get("busy_before_pct") for r in rs])
    out["stats_turned_off"] = sum(1 for r in rs if not r.get("stats_on_after"))
    return out


cost = [c for c in (cost_summary(w) for w in workloads) if c] if not cost_skip else []
cost_errors = [f"round {r['round']} {r['workload']}: {r['error']}" for r in cost_runs if r.get("error")]
summary = {"targets": targets, "checks": checks, "throughput": rows, "memory": mem, "cost": cost}
json.dump({"meta": meta, "summary": summary, "skipped": skips, "notes": notes, "memory": memory,
           "memory_skipped": memory_skip, "cost_skipped": cost_skip, "runs": runs, "cost_runs": cost_runs},
          open(out_json, "w"), indent=1)

# --- markdown -------------------------------------------------------------------------------
L = []
w_ = L.append
w_("# Flow tracking benchmarks")
w_("")
w_(f"Generated by `bench/run_flows.sh` on {meta['date']} (commit `{meta['commit']}`). Do not edit by hand; "
   "see [bench/README.md](../README.md) for what is measured and how to read it.")
w_("")
w_("| | |")
w_("|---|---|")
w_(f"| Kernel | {meta['kernel']} |")
w_(f"| CPU | {meta['cpus']} x {meta['cpu_model']} |")
w_(f"| Network | veth {meta['veth']}; {meta['offloads'] or 'offloads unknown'} on the host end |")
w_(f"| Workloads | {meta['iperf3']}: `-t {meta['seconds_per_run']}` from the host (client on CPU {meta['client_cpu']}, in its own cgroup) "
   f"to the namespace (server on CPU {meta['server_cpu']}); TCP one stream; UDP `-u -l {meta['udp_len']} -b 0` |")
w_(f"| Rounds | {meta['rounds']}, every configuration once per round, the order rotated every round |")
w_(f"| Vigil | `{meta['vigil_agent'] or 'not run'}` |")
w_(f"| nftables | {meta['nft']}: {meta['nft_rule']} |")
w_(f"| Duration | {meta['duration_seconds']} s; waited {meta['quiet_spent']} s for other load to pass; load average at the end {meta['loadavg_end']} |")
w_("")
w_("## Targets")
w_("")
for t in targets:
    w_(f"- **{t['result']}**: Vigil flow tracking keeps at least {TARGET:.0%} of the TCP throughput without tracking: {t['detail']}")
u = row_of("udp", "vigil")
if u is not None and u["paired"] is not None:
    w_(f"- (no target) UDP packet rate with Vigil: {u['paired']:.3f} of the baseline's (median of per-round ratios)")
for c in checks:
    w_(f"- Check {c['name']}: **{c['result']}**: {c['detail']}")
busy = [r.get("busy_before_pct") for r in runs if r.get("busy_before_pct") is not None]
disturbed = [b for b in busy if b > meta["quiet_pct"]]
if busy and len(disturbed) * 2 > len(busy):
    w_(f"- **Caution**: other work used more than {meta['quiet_pct']}% of a core right before {len(disturbed)} of "
       f"{len(busy)} runs (median {med(busy):.0f}%): the machine was busy, the ratios are noisy; see the per "
       "CPU-second columns and repeat on a quieter machine.")
w_("")
w_("## Throughput")
w_("")
for c, why in skips.items():
    w_(f"- {c}: NOT RUN: {why}")
if skips:
    w_("")
for w in workloads:
    key, title, unit, scale, digits = METRIC[w]
    rs = [r for r in rows if r["workload"] == w]
    if not rs:
        continue
    w_(f"### {title}")
    w_("")
    extra = "| Sent packets/s | Loss % " if w == "udp" else "| Retransmits "
    w_(f"| Config | Runs | Median {unit} | min - max | vs baseline | paired | per CPU-second | paired | Client CPU % | Server CPU % | Agent CPU % {extra}|")
    w_("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if w == "udp" else "---:|"))
    for r in rs:
        tail = (f"| {fmt(r['sent_pps'])} | {fmt(r['loss_pct'], 1)} " if w == "udp" else f"| {fmt(r['retransmits'])} ")
        w_(f"| {r['config']} | {r['runs']}{' (' + str(len(r['errors'])) + ' failed)' if r['errors'] else ''} | "
           f"{fmt(r['median'], digits, scale)} | {fmt(r['min'], digits, scale)} - {fmt(r['max'], digits, scale)} | "
           f"{fmt(r['vs_baseline'], 3)} | {fmt(r['paired'], 3)} | {fmt(r['per_cpu_second'], digits, scale)} | {fmt(r['per_cpu_paired'], 3)} | "
           f"{fmt(r['client_cpu_pct'], 0)} | {fmt(r['server_cpu_pct'], 0)} | {fmt(r['agent_cpu_pct'], 1)} {tail}|")
    w_("")
w_("vs baseline = median / the baseline's median; paired = the median of per-round ratios (each run against the baseline "
   "run of its own round), the figure to read on a shared machine. CPU % = iperf3's own user+system time of the client "
   "and the server process over the run (100 = one core); agent CPU % the same for vigil-agent (its reader threads and table scans; "
   "its BPF programs run in the packets' own context). Per CPU-second = the figure over the client's and the "
   "server's CPU seconds together: veth hands a packet to the receiver in the sender's own context, so that CPU time "
   "holds most of the packet processing, Vigil's and nft's included, and this ratio moves less than throughput when "
   "other work takes CPU time away from the benchmark.")
w_("")
w_("## Memory with many active flows")
w_("")
if memory_skip or mem is None:
    w_(f"{memory_skip or 'not measured'}.")
else:
    t = mem["table"]
    w_(f"`{memory['agent']}`, then {memory['flows']:,} distinct UDP flows (raw frames from {-(-memory['flows'] // 50000)} source "
       f"addresses x up to 50,000 source ports, sent into the host end's tc ingress, every frame again every 2 s: "
       f"{memory['sender_passes']} passes). The table held {fmt(t['table_entries'])} of {fmt(t['table_capacity'])} entries "
       f"after {memory['fill_seconds']} s; sampled {memory['hold_seconds']} s later with the flows still active (evictions {fmt(t['table_evictions'])}, flow events {fmt(t['flows_seen'])}, "
       f"lost {fmt(t['flows_lost'])}, event ring {fmt(t['ring_size'])} of {fmt(t['ring_capacity'])}).")
    if memory.get("note"):
        w_("")
        w_(f"Caution: {memory['note']}.")
    w_("")
    w_("| | Before (idle) | With the flows | Difference |")
    w_("|---|---:|---:|---:|")
    for k, name in (("vmrss_kb", "Agent VmRSS"), ("vmhwm_kb", "Agent VmHWM"), ("rssanon_kb", "Agent RssAnon")):
        bv, av = mem[k]["before"], mem[k]["after"]
        w_(f"| {name} | {fmt(bv / 1024 if bv is not None else None, 1)} MiB | {fmt(av / 1024 if av is not None else None, 1)} MiB | "
           f"{fmt((av - bv) / 1024 if None not in (av, bv) else None, 1)} MiB |")
    for k, name in (("flow_maps_memlock", "BPF maps vigil_flow*, memlock"), ("all_maps_memlock", "All the agent's BPF maps, memlock")):
        bv, av = mem[k]["before"], mem[k]["after"]
        w_(f"| {name} | {fmt(bv / 2**20, 1)} MiB | {fmt(av / 2**20, 1)} MiB | {fmt((av - bv) / 2**20, 1)} MiB |")
    w_("")
    w_(f"Agent CPU time between the two samples: {mem['agent_cpu_seconds']:.1f} s. Maps of the agent (from "
       "/proc/PID/fdinfo, named by `bpftool map show`), with the flows:")
    w_("")
    w_("| Map | Type | Max entries | memlock |")
    w_("|---|---|---:|---:|")
    for m in sorted(memory["after"].get("maps", []), key=lambda m: -m.get("bytes_memlock", m["memlock"])):
        if (m.get("name") or "").startswith("vigil_flow") or m.get("bytes_memlock", m["memlock"]) >= 1 << 20:
            w_(f"| {m.get('name') or m['id']} | {m['type']} | {m['max_entries']:,} | {m.get('bytes_memlock', m['memlock']) / 2**20:,.2f} MiB |")
    w_("")
    w_("Maps with names starting vigil_flow and any other map of 1 MiB or more. memlock is the kernel's own accounting "
       "of the map's memory (for a preallocated hash: all of max_entries from the start).")
w_("")
w_("## In-kernel cost of the flow programs")
w_("")
if cost_skip or not cost:
    w_(f"{cost_skip or 'not measured: no successful run'}{'; ' + '; '.join(cost_errors) if cost_errors else ''}.")
    w_("")
else:
    w_(f"`{meta['cost_agent']}` with `kernel.bpf_stats_enabled=1` (before the part: "
       f"{meta['bpf_stats_enabled_before']}; after: {meta['bpf_stats_enabled_after']}). {meta['cost_rounds']} rounds, each one `-t {meta['cost_seconds']}` run of "
       f"every workload, as in the throughput part ({meta['cost_duration_seconds']} s in all, with the agent's start); per "
       "program the deltas of `run_cnt` and `run_time_ns` over each run (`bpftool prog show`, the programs the agent "
       "holds), medians over the rounds.")
    w_("")
    w_(f"These figures are CPU time spent inside the programs, their helper calls included, in the context of the "
       f"packet or the socket call; the agent's user-space work comes on top. On this host the kernel reports SRSO "
       f"(AMD Speculative Return Stack Overflow) as \"{meta['srso'] or 'unknown'}\": with its mitigation on, every call "
       "and return, so every helper call, costs far more than on an unmitigated machine, and the programs' cost is "
       "mostly their helper calls. ns per run moves much less with other load on the machine than throughput does, "
       "though not nothing: other work evicts the programs' maps from the caches, and time the hypervisor takes "
       "away in the middle of a run counts in it (see how busy the machine was, under each table).")
    w_("")
    for c in cost:
        if c["workload"] == "udp":
            w_(f"### UDP (`-u -l {meta['udp_len']} -b 0`): per datagram the client sent")
            w_("")
            w_(f"{fmt(c['units'])} datagrams per run ({fmt(c['sent_packets_per_second'])}/s); the host end of the veth "
               f"sent {fmt(c['veth_tx_packets'])} packets.")
        else:
            w_("### TCP (one stream): per GSO packet the host end of the veth sent")
            w_("")
            w_(f"{fmt(c['units'])} GSO packets per run of {fmt(c['payload_bytes_per_unit'])} payload bytes on average "
               f"({fmt(c['bits_per_second'], 2, 1e9)} Gbit/s); ACKs come back the other way and count as runs too. "
               f"All flow programs together: {fmt(c['ns_per_kib']['median'], 1)} ns per KiB of payload "
               f"({fmt(c['ns_per_kib']['min'], 1)} - {fmt(c['ns_per_kib']['max'], 1)}).")
        w_("")
        u = c["unit"]
        w_(f"| Program | Type | Runs in one iperf3 run | Runs per {u} | ns per run | min - max | ns per {u} |")
        w_("|---|---|---:|---:|---:|---:|---:|")
        for p in c["programs"]:
            a = p["avg_ns"]
            w_(f"| {p['name']} | {p['type']} | {fmt(p['run_cnt'])} | {fmt(p['runs_per_unit'], 3)} | {fmt(a['median'])} | "
               f"{fmt(a['min'])} - {fmt(a['max'])} | {fmt(p['ns_per_unit'])} |")
        t = c["ns_per_unit"]
        w_(f"| **All flow programs** | | | | | | **{fmt(t['median'])}** ({fmt(t['min'])} - {fmt(t['max'])}) |")
        w_("")
        w_(f"ns per {u}, round by round: {', '.join(f'{x:,}' for x in c['ns_per_unit_by_round'])}; the machine was busy "
           f"{fmt(c['busy_before_pct'])}% of a core (median) in the second before a run."
           + (f" Caution: kernel.bpf_stats_enabled was off after {c['stats_turned_off']} runs (someone turned it off): "
              "those runs are short of counts." if c["stats_turned_off"] else ""))
        w_("")
    if cost_errors:
        w_(f"Failed runs: {'; '.join(cost_errors)}.")
        w_("")
w_("## Every run")
w_("")
w_("| Round | Config | Workload | Result | Counted / sent | nft out / in packets | Vigil flow events, table entries | Waited s | Machine busy before, % of a core |")
w_("|---:|---|---|---:|---:|---|---|---:|---:|")
for r in sorted(runs, key=lambda r: (r["round"], r["order"], r["workload"])):
    key, _, unit, scale, digits = METRIC[r["workload"]]
    res = f"{fmt(r.get(key), digits, scale)} {unit}" if r.get(key) else "error: " + str(r.get("error"))
    n = r.get("nft")
    nft = f"{n['output']['packets']:,} / {n['input']['packets']:,}" if n and "output" in n and "input" in n else ""
    v = r.get("vigil")
    vig = (f"{v['flows_seen']:,}, {v['table_entries']:,}" if v and "flows_seen" in v else (v or {}).get("error", ""))
    counted = fmt(nft_ratio(r) if r["config"] == "nftables" else vigil_ratio(r) if r["config"] == "vigil" else None, 3)
    w_(f"| {r['round']} | {r['config']} | {r['workload']} | {res} | {counted} | {nft} | {vig} | {r.get('quiet_wait_seconds', 0)} | {fmt(r.get('busy_before_pct'))} |")
w_("")
w_("Counted / sent: the configuration's own counter of the client's traffic over what iperf3 sent (TCP: nft's output bytes, "
   "or Vigil's egress payload bytes of the client's cgroup from `vigil traffic`, over iperf3's bytes; UDP: packets).")
w_("")
if notes:
    w_("## Notes")
    w_("")
    for n in notes:
        w_(f"- {n}")
    w_("")
open(out_md, "w").write("\n".join(L))
PY
mkdir -p "$RESULTS_DIR" || die "cannot create $RESULTS_DIR"
"$PYTHON" "$WORK/summarize.py" "$WORK" "$RESULTS_DIR/flows.json" "$RESULTS_DIR/flows.md" ||
  die "could not write the summary"
log "wrote $RESULTS_DIR/flows.md and flows.json"
sed -n '/^## Targets/,/^## /p' "$RESULTS_DIR/flows.md" | sed '$d' >&2
grep -E '^### (UDP|TCP) \(|^\| \*\*All flow programs' "$RESULTS_DIR/flows.md" >&2
exit 0
