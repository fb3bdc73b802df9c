#!/usr/bin/env bash
# XDP flood benchmark: dropping a UDP flood end to end over a veth pair, Vigil against the usual
# ways of doing the same on Linux.
#
#   bench/xdp_flood.sh [BUILD_DIR] [OUT_JSON]     (bench/run_xdp.sh calls this; OUT_JSON
#                                                 defaults to stdout, the log goes to stderr)
#
# Two network namespaces joined by a veth pair: trafgen (netsniff-ng) in vigil-bx-tx floods
# 60-byte UDP frames to port 9 of the other end, vbx-rx in vigil-bx-rx. On the receiving end, one
# configuration at a time, rotated round by round:
#   baseline   nothing: the kernel delivers every packet to UDP (no socket: counted as NoPorts)
#   vigil      the real vigil-agent, one policy file with one XDP rule (udp, destination port 9,
#              drop) on vbx-rx, pinned under a bench pin directory, cleaned up with --cleanup
#   xdp-filter `xdp-filter load vbx-rx` + `xdp-filter port 9 --proto udp`, unloaded after
#   iptables   raw table PREROUTING -i vbx-rx -p udp --dport 9 -j DROP (in the receiver netns)
#   nftables   a netdev-family table, ingress hook on vbx-rx, `udp dport 9 counter drop`
#
# Where the CPU goes: the receiving veth has GRO on (so it always receives through NAPI, with or
# without XDP) and threaded NAPI, and its NAPI thread is pinned to BENCH_XDP_RX_CPU: everything
# the receiver does with a packet (XDP, GRO, netfilter, IP and UDP, ICMP) runs in that one
# kernel thread, whose exact run time /proc/PID/schedstat gives. trafgen pins its sender to CPU
# 0 itself. It sends with sendto() (`-t 0ns`: as fast as it can, or `-b` a fixed rate), which
# retries when the receiver's ring is full, so nothing is lost on the way: offered packets are
# packets that reached the receiver.
#
# Nothing leaves the two namespaces this script creates. It runs in a private mount namespace
# with its own bpffs on /sys/fs/bpf, so xdp-filter's and Vigil's pins never mix with the
# machine's and vanish with it; on any exit it also unloads, deletes and detaches everything it
# set up explicitly. Exit status: 0 when it ran (configurations that could not run are reported
# in the JSON), 1 when it could not run at all.
#
# Environment:
#   BENCH_XDP_SECONDS    length of one flood (default 6)
#   BENCH_XDP_ROUNDS     rounds (default 5)
#   BENCH_XDP_CONFIGS    configurations (default "baseline vigil xdp-filter iptables nftables")
#   BENCH_XDP_RATE       "max" (default) or packets per second for a fixed rate (trafgen -b)
#   BENCH_XDP_RX_CPU     CPU of the receiver's NAPI thread (default: the last CPU)
#   BENCH_XDP_FILTER_FEATURES  passed to `xdp-filter load --features` (default: none given,
#                        xdp-filter's default, all features)
#   BENCH_XDP_NICE       nice value of trafgen and of the receiver's NAPI thread (default -10),
#                        so that other work on a shared machine disturbs the flood less
#   BENCH_XDP_BPF_STATS  1 (default): kernel BPF run-time statistics on during the benchmark
#                        (through a BPF_ENABLE_STATS fd held by a helper that dies with the
#                        script; kernel.bpf_stats_enabled is left alone) for the XDP program's
#                        own ns per packet; 0: off
#   BENCH_READY_TIMEOUT  seconds to wait for the agent's rule to be in force (default 30)
#   BENCH_QUIET_PCT      before each flood, wait while the machine uses more than this % of one
#                        core (measured over 1 s; default 15) ...
#   BENCH_QUIET_MAX      ... but at most this many seconds per flood (default 20; 0: no check)
#   BENCH_QUIET_BUDGET   ... and at most this many seconds in all (default 150)
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

log() { printf '[xdp-flood %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

((EUID == 0)) || die "must run as root (network namespaces, XDP)"

# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
# A private mount namespace first: our own bpffs on /sys/fs/bpf (and our netns mounts) exist
# only in it and go away with it, whatever happens to this script.
enter_private_mount_ns "$@"
resolve_build_dir "${1:-build}"
OUT=${2:-/dev/stdout}

RUN_SECONDS=${BENCH_XDP_SECONDS:-6}
ROUNDS=${BENCH_XDP_ROUNDS:-5}
CONFIGS=${BENCH_XDP_CONFIGS:-"baseline vigil xdp-filter iptables nftables"}
RATE=${BENCH_XDP_RATE:-max}
NCPU=$(nproc)
RX_CPU=${BENCH_XDP_RX_CPU:-$((NCPU - 1))}
FILTER_FEATURES=${BENCH_XDP_FILTER_FEATURES:-}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}
NICE=${BENCH_XDP_NICE:--10}
BPF_STATS=${BENCH_XDP_BPF_STATS:-1}
QUIET_PCT=${BENCH_QUIET_PCT:-15}
QUIET_MAX=${BENCH_QUIET_MAX:-20}
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-150}
QUIET_SPENT=0

AGENT=$BUILD_DIR/agent/vigil-agent
CLI=$BUILD_DIR/cli/vigil
SOCK=/tmp/vigil-bench-xdp.sock
PIN_DIR=/sys/fs/bpf/vigil-bench
NS_TX=vigil-bx-tx
NS_RX=vigil-bx-rx
IF_TX=vbx-tx
IF_RX=vbx-rx
ADDR_TX=10.203.0.1
ADDR_RX=10.203.0.2
PORT=9
NFT_TABLE=vigil_bench

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
{ is_uint "$RUN_SECONDS" && ((RUN_SECONDS > 0)); } || die "BENCH_XDP_SECONDS must be a positive integer"
{ is_uint "$ROUNDS" && ((ROUNDS > 0)); } || die "BENCH_XDP_ROUNDS must be a positive integer"
[[ "$RATE" == max ]] || { is_uint "$RATE" && ((RATE > 0)); } || die "BENCH_XDP_RATE must be max or a positive integer"
{ is_uint "$RX_CPU" && ((RX_CPU < NCPU)); } || die "BENCH_XDP_RX_CPU must be a CPU number below $NCPU"
{ [[ "$NICE" =~ ^-?[0-9]+$ ]] && ((NICE >= -20 && NICE <= 19)); } || die "BENCH_XDP_NICE must be an integer from -20 to 19"
for v in QUIET_PCT QUIET_MAX QUIET_BUDGET; do is_uint "${!v}" || die "BENCH_$v must be a non-negative integer"; done
for c in $CONFIGS; do
  case "$c" in baseline | vigil | xdp-filter | iptables | nftables) ;; *) die "bad BENCH_XDP_CONFIGS entry '$c'" ;; esac
done
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || die "python3 is required"

# Runs a command in the receiver's network namespace. nsenter keeps our mounts (bpffs), which
# `ip netns exec` would replace with a fresh /sys.
in_rx() { nsenter --net="/run/netns/$NS_RX" -- "$@"; }
# `ip netns exec` where the namespace's own /sys is needed (ethtool, sysfs attributes).
in_rx_sys() { ip netns exec "$NS_RX" "$@"; }
in_tx() { ip netns exec "$NS_TX" "$@"; }

# ---------------------------------------------------------------------------------------------
# State and cleanup.

WORK=$(mktemp -d /tmp/vigil-bench-xdp.XXXXXX) || die "mktemp failed"
RUNS=$WORK/runs.jsonl
: >"$RUNS"
AGENT_PID=
TRAFGEN_PID=
STATS_PID=
ACTIVE=       # the configuration currently set up on the receiver
MOUNTED_BPFFS=0
NOTES=()
declare -A SKIP_REASON RAN


teardown_config() { # the configuration set up on the receiver, if any
  case "$ACTIVE" in
    vigil)
      stop_pid "$AGENT_PID" TERM 15
      AGENT_PID=
      # The agent leaves enforcement pinned on purpose; --cleanup is how an operator ends it.
      if [[ -x "$AGENT" ]] && ! in_rx "$AGENT" --cleanup --pin-dir "$PIN_DIR" >>"$WORK/agent-cleanup.log" 2>&1; then
        log "warning: vigil-agent --cleanup failed: $(tail -n 3 "$WORK/agent-cleanup.log" | tr '\n' ' ')"
      fi
      rm -f "$SOCK"
      ;;
    xdp-filter) in_rx xdp-filter unload "$IF_RX" >>"$WORK/xdp-filter.log" 2>&1 ;;
    iptables) in_rx iptables -t raw -D PREROUTING -i "$IF_RX" -p udp --dport "$PORT" -j DROP 2>/dev/null ;;
    nftables) in_rx nft delete table netdev "$NFT_TABLE" 2>/dev/null ;;
  esac
  ACTIVE=
  # Whatever is still attached to the receiver now is a leftover: detach it.
  if ip -n "$NS_RX" link show "$IF_RX" 2>/dev/null | grep -q ' xdp'; then
    log "warning: an XDP program was still attached to $IF_RX; detaching it"
    NOTES+=("An XDP program was still attached to $IF_RX after a configuration was torn down; it was detached.")
    ip -n "$NS_RX" link set dev "$IF_RX" xdp off 2>/dev/null
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n "$TRAFGEN_PID" ]] && stop_pid "$TRAFGEN_PID" INT 5
  teardown_config
  [[ -n "$STATS_PID" ]] && stop_pid "$STATS_PID" TERM 5
  # Pins left under our bpffs by a crashed agent or xdp-filter.
  if ip netns list 2>/dev/null | grep -qw "$NS_RX"; then
    [[ -x "$AGENT" ]] && in_rx "$AGENT" --cleanup --pin-dir "$PIN_DIR" >/dev/null 2>&1
    in_rx xdp-filter unload --all >/dev/null 2>&1
  fi
  ip netns del "$NS_TX" 2>/dev/null
  ip netns del "$NS_RX" 2>/dev/null
  ((MOUNTED_BPFFS)) && umount /sys/fs/bpf 2>/dev/null
  rm -f "$SOCK"
  rm -rf "$WORK"
  exit "$rc"
}
trap_exit cleanup

# ---------------------------------------------------------------------------------------------
# Counters. One snapshot is a JSON object; a run records the snapshots before and after.

cat >"$WORK/snap.py" <<'PY'
import json, re, subprocess, sys

def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    except Exception:
        return ""

def proc_stat():
    cpus = {}
    for line in open("/proc/stat"):
        if line.startswith("cpu") and line[3:4].isdigit():
            f = line.split()
            v = [int(x) for x in f[1:9]]  # user nice system idle iowait irq softirq steal
            cpus[f[0][3:]] = {"busy": v[0] + v[1] + v[2] + v[5] + v[6], "idle": v[3] + v[4],
                              "softirq": v[6], "steal": v[7]}
    return cpus

def schedstat(pids):
    total = 0
    for p in pids:
        try:
            total += int(open(f"/proc/{p}/schedstat").read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total

def proc_cpu_ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return None

def link_stats(ns, ifname):
    try:
        d = json.loads(run(["ip", "-n", ns, "-s", "-j", "link", "show", ifname]))[0]
        s = d.get("stats64", {})
        return {"rx_packets": s["rx"]["packets"], "rx_dropped": s["rx"]["dropped"],
                "tx_packets": s["tx"]["packets"], "tx_dropped": s["tx"]["dropped"]}
    except Exception:
        return {}

def ethtool(ns, ifname):
    out = {}
    for line in run(["ip", "netns", "exec", ns, "ethtool", "-S", ifname]).splitlines():
        m = re.match(r"\s*(\S+):\s+(\d+)$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out

def udp(ns):
    lines = [l.split() for l in run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"]).splitlines()
             if l.startswith("Udp:")]
    if len(lines) < 2:
        return {}
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:])}

def main():
    a = dict(x.split("=", 1) for x in sys.argv[1:])
    napi = [p for p in a.get("napi", "").split(",") if p]
    snap = {"cpus": proc_stat(), "napi_ns": schedstat(napi), "napi_pids": napi,
            "rx_link": link_stats(a["ns_rx"], a["if_rx"]), "tx_link": link_stats(a["ns_tx"], a["if_tx"]),
            "rx_ethtool": ethtool(a["ns_rx"], a["if_rx"]), "udp": udp(a["ns_rx"])}
    if a.get("tool_pid"):
        snap["tool_ticks"] = proc_cpu_ticks(a["tool_pid"])
    if a.get("prog_id"):
        try:
            p = json.loads(run(["bpftool", "prog", "show", "id", a["prog_id"], "-j"]))
            snap["prog"] = {"id": p.get("id"), "name": p.get("name"),
                            "run_cnt": p.get("run_cnt", 0), "run_time_ns": p.get("run_time_ns", 0)}
        except ValueError:
            pass
    print(json.dumps(snap))

main()
PY

# The receiver's NAPI threads (one per receive queue), comma-separated.
napi_pids() {
  pgrep "^napi/$IF_RX-" | paste -sd, -
}

# Moves the receiver's NAPI threads to RX_CPU, at nice NICE. They are re-created when NAPI is
# (attaching XDP may do that), so this runs again right before every flood.
pin_napi() {
  local pids pid
  pids=$(napi_pids)
  [[ -n "$pids" ]] || return 1
  for pid in ${pids//,/ }; do
    taskset -p -c "$RX_CPU" "$pid" >/dev/null 2>&1 || return 1
    renice -n "$NICE" -p "$pid" >/dev/null 2>&1
  done
  return 0
}

snapshot() { # out-file [tool-pid] [xdp-prog-id]
  "$PYTHON" "$WORK/snap.py" napi="$(napi_pids)" ns_rx="$NS_RX" if_rx="$IF_RX" ns_tx="$NS_TX" \
    if_tx="$IF_TX" tool_pid="${2:-}" prog_id="${3:-}" >"$1"
}

# Holds a BPF_ENABLE_STATS fd (kernel BPF run-time statistics stay on while it is open) until
# it is killed or this script dies.
cat >"$WORK/stats_holder.py" <<'PY'
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the benchmark
nr_bpf = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine)
if nr_bpf is None:
    sys.exit("unknown bpf(2) syscall number on " + os.uname().machine)
attr = ctypes.create_string_buffer(8)  # union bpf_attr.enable_stats: type = BPF_STATS_RUN_TIME (0)
fd = libc.syscall(nr_bpf, 32, attr, 8)  # BPF_ENABLE_STATS
if fd < 0:
    sys.exit("BPF_ENABLE_STATS: " + os.strerror(ctypes.get_errno()))
print("ok", flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    signal.pause()
PY

# The filter's own count of dropped packets, as JSON ({"packets": N} or {}).
filter_counter() { # config
  case "$1" in
    vigil)
      [[ -x "$CLI" ]] || { echo '{}'; return; }
      "$CLI" --server "unix://$SOCK" status -o json 2>/dev/null | "$PYTHON" -c '
import json, sys
try:
    x = json.load(sys.stdin).get("xdp", {})
except ValueError:
    print("{}"); sys.exit()
n = sum(int(r.get("packets", 0)) for r in x.get("rules", []) if r.get("rule") == "drop-flood")
print(json.dumps({"packets": n, "xdp_stats": {s["name"]: int(s.get("value", 0)) for s in x.get("stats", [])}}))'
      ;;
    xdp-filter)
      in_rx xdp-filter status 2>/dev/null | awk -v port="$PORT" '
        /^Filtered ports:/ {p = 1; next} /^Filtered/ {p = 0}
        p && $1 == port {n = $NF} END {printf "{\"packets\": %d}\n", n}'
      ;;
    iptables)
      in_rx iptables -t raw -L PREROUTING -v -x -n 2>/dev/null |
        awk '$3 == "DROP" && /dpt:'"$PORT"'/ {n += $1} END {printf "{\"packets\": %d}\n", n}'
      ;;
    nftables)
      in_rx nft -j list table netdev "$NFT_TABLE" 2>/dev/null | "$PYTHON" -c '
import json, sys
n = 0
try:
    for item in json.load(sys.stdin).get("nftables", []):
        for e in item.get("rule", {}).get("expr", []):
            if "counter" in e:
                n += e["counter"]["packets"]
except ValueError:
    pass
print(json.dumps({"packets": n}))'
      ;;
    *) echo '{}' ;;
  esac
}

# What is attached to the receiver (ip's view), for the record.
xdp_attachment() {
  ip -n "$NS_RX" -d -j link show "$IF_RX" 2>/dev/null | "$PYTHON" -c '
import json, sys
try:
    x = json.load(sys.stdin)[0].get("xdp")
except (ValueError, IndexError):
    x = None
print(json.dumps(x))'
}

# ---------------------------------------------------------------------------------------------
# Configurations. setup_<config> puts it in force on the receiver and returns 0, or sets
# SETUP_ERROR and returns 1.

POLICY_DIR=$WORK/policies
mkdir -p "$POLICY_DIR"
cat >"$POLICY_DIR/bench-drop.yaml" <<EOF
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: bench-drop}
spec:
  xdp:
    interfaces: [$IF_RX]
    rules:
      - name: drop-flood
        action: drop
        match: {protocol: udp, destinationPorts: [$PORT]}
EOF

setup_vigil() {
  rm -f "$SOCK"
  : >"$WORK/agent.log"
  nsenter --net="/run/netns/$NS_RX" -- "$AGENT" --api "unix://$SOCK" --policy-dir "$POLICY_DIR" \
    --pin-dir "$PIN_DIR" >>"$WORK/agent.log" 2>&1 &
  AGENT_PID=$!
  ACTIVE=vigil
  local i status
  for ((i = 0; i < READY_TIMEOUT * 5; i++)); do
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
      wait "$AGENT_PID" 2>/dev/null
      AGENT_PID=
      SETUP_ERROR="vigil-agent exited during start-up: $(tail -n 3 "$WORK/agent.log" | tr '\n' ' ')"
      return 1
    fi
    # Ready once the rule is in force and the program is attached to the receiver.
    if [[ -x "$CLI" ]]; then
      status=$("$CLI" --server "unix://$SOCK" status -o json 2>/dev/null) &&
        "$PYTHON" -c '
import json, sys
x = json.loads(sys.argv[1]).get("xdp", {})
ok = x.get("state") == "enforcing" and any(i.get("name") == sys.argv[2] for i in x.get("interfaces", []))
sys.exit(0 if ok else 1)' "$status" "$IF_RX" 2>/dev/null && return 0
    elif ip -n "$NS_RX" link show "$IF_RX" | grep -q ' xdp'; then
      return 0
    fi
    sleep 0.2
  done
  SETUP_ERROR="the agent's XDP rule was not in force on $IF_RX within ${READY_TIMEOUT}s: $(tail -n 3 "$WORK/agent.log" | tr '\n' ' ')"
  return 1
}

setup_xdp-filter() {
  local feat=()
  [[ -n "$FILTER_FEATURES" ]] && feat=(--features "$FILTER_FEATURES")
  ACTIVE=xdp-filter
  if ! in_rx xdp-filter load "$IF_RX" "${feat[@]}" >>"$WORK/xdp-filter.log" 2>&1; then
    SETUP_ERROR="xdp-filter load failed: $(tail -n 3 "$WORK/xdp-filter.log" | tr '\n' ' ')"
    return 1
  fi
  if ! in_rx xdp-filter port "$PORT" --proto udp --mode dst >>"$WORK/xdp-filter.log" 2>&1; then
    SETUP_ERROR="xdp-filter port failed: $(tail -n 3 "$WORK/xdp-filter.log" | tr '\n' ' ')"
    return 1
  fi
  return 0
}

setup_iptables() {
  ACTIVE=iptables
  if ! in_rx iptables -t raw -I PREROUTING -i "$IF_RX" -p udp --dport "$PORT" -j DROP 2>"$WORK/iptables.err"; then
    SETUP_ERROR="iptables failed: $(head -c 300 "$WORK/iptables.err")"
    return 1
  fi
}

setup_nftables() {
  ACTIVE=nftables
  if ! in_rx nft -f - 2>"$WORK/nft.err" <<EOF; then
table netdev $NFT_TABLE {
  chain ingress {
    type filter hook ingress device "$IF_RX" priority -500; policy accept;
    udp dport $PORT counter drop
  }
}
EOF
    SETUP_ERROR="nft failed: $(head -c 300 "$WORK/nft.err")"
    return 1
  fi
}

setup_baseline() { ACTIVE=baseline; }

# ---------------------------------------------------------------------------------------------
# Preconditions and the network.

# Two benchmarks at once measure each other (run_xdp.sh holds the lock already).
[[ -n "${VIGIL_BENCH_LOCKED:-}" ]] || bench_lock

for tool in ip nsenter trafgen ethtool taskset pgrep; do
  command -v "$tool" >/dev/null || die "$tool is required (make bench-deps installs it)"
done
((RX_CPU != 0)) || NOTES+=("The receiver's NAPI thread was on CPU 0, where trafgen sends from: the two shared a core.")
((NCPU >= 2)) || NOTES+=("Only one CPU: the sender and the receiver share it, so the receiver's CPU per packet is the only meaningful figure.")
for c in $CONFIGS; do
  case "$c" in
    vigil)
      [[ -x "$AGENT" ]] || SKIP_REASON[$c]="agent binary $AGENT not found (build it first)"
      [[ -z "${SKIP_REASON[$c]:-}" && ! -x "$CLI" ]] && NOTES+=("The vigil CLI ($CLI) is missing: readiness is taken from the interface and the rule counter is not read.")
      ;;
    xdp-filter) command -v xdp-filter >/dev/null || SKIP_REASON[$c]="xdp-filter not installed (Debian package xdp-tools)" ;;
    iptables) command -v iptables >/dev/null || SKIP_REASON[$c]="iptables not installed" ;;
    nftables) command -v nft >/dev/null || SKIP_REASON[$c]="nft not installed (Debian package nftables)" ;;
  esac
done

BPF_STATS_ON=0
if ((BPF_STATS)) && command -v bpftool >/dev/null; then
  "$PYTHON" "$WORK/stats_holder.py" >"$WORK/stats-holder.out" 2>&1 &
  STATS_PID=$!
  for ((i = 0; i < 50; i++)); do
    grep -q '^ok' "$WORK/stats-holder.out" 2>/dev/null && { BPF_STATS_ON=1; break; }
    kill -0 "$STATS_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ((!BPF_STATS_ON)); then
    NOTES+=("BPF run-time statistics unavailable: $(head -c 200 "$WORK/stats-holder.out")")
    stop_pid "$STATS_PID" TERM 2
    STATS_PID=
  fi
fi

# Our own bpffs, visible only in this mount namespace.
mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs on /sys/fs/bpf"
MOUNTED_BPFFS=1

ip netns del "$NS_TX" 2>/dev/null
ip netns del "$NS_RX" 2>/dev/null
ip netns add "$NS_TX" || die "cannot create network namespace $NS_TX"
ip netns add "$NS_RX" || die "cannot create network namespace $NS_RX"
# One queue each way, so that one NAPI instance (one thread) receives everything.
ip link add "$IF_TX" netns "$NS_TX" numtxqueues 1 numrxqueues 1 type veth \
  peer name "$IF_RX" netns "$NS_RX" numtxqueues 1 numrxqueues 1 || die "cannot create the veth pair"
ip -n "$NS_TX" addr add "$ADDR_TX/30" dev "$IF_TX"
ip -n "$NS_RX" addr add "$ADDR_RX/30" dev "$IF_RX"
ip -n "$NS_TX" link set "$IF_TX" up
ip -n "$NS_RX" link set "$IF_RX" up
ip -n "$NS_RX" link set lo up
# GRO on the receiver gives it NAPI without XDP too; the sender must not offer TSO, or veth
# bypasses NAPI for packet-socket frames. Threaded NAPI puts the receive work in one thread.
in_rx_sys ethtool -K "$IF_RX" gro on >/dev/null 2>&1 || die "cannot enable GRO on $IF_RX"
in_tx ethtool -K "$IF_TX" tso off >/dev/null 2>&1 || die "cannot disable TSO on $IF_TX"
in_rx_sys sh -c "echo 1 > /sys/class/net/$IF_RX/threaded" 2>/dev/null || die "cannot enable threaded NAPI on $IF_RX"
pin_napi || die "no NAPI thread for $IF_RX"
MAC_TX=$(ip -n "$NS_TX" -j link show "$IF_TX" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
MAC_RX=$(ip -n "$NS_RX" -j link show "$IF_RX" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
ip -n "$NS_TX" neigh replace "$ADDR_RX" lladdr "$MAC_RX" dev "$IF_TX" nud permanent

# 14 + 20 + 8 + 18 = 60 bytes on the wire before the FCS, the Ethernet minimum.
TRAFGEN_CFG=$WORK/flood.cfg
cat >"$TRAFGEN_CFG" <<EOF
{ eth(da=$MAC_RX, sa=$MAC_TX), ipv4(saddr=$ADDR_TX, daddr=$ADDR_RX, ttl=64), udp(sp=40000, dp=$PORT), fill(0x41, 18) }
EOF
if [[ "$RATE" == max ]]; then
  RATE_ARGS=(-t 0ns)
else
  RATE_ARGS=(-b "${RATE}pps")
fi
TRAFGEN_VERSION=$(trafgen -v 2>/dev/null | head -n 1 | awk '{print $2}')

log "veth $IF_TX ($NS_TX) -> $IF_RX ($NS_RX); receiver NAPI thread on CPU $RX_CPU, trafgen on CPU 0"

# ---------------------------------------------------------------------------------------------
# One flood.

flood() { # config round order
  local config=$1 round=$2 order=$3 tool_pid=""
  [[ "$config" == vigil ]] && tool_pid=$AGENT_PID
  wait_machine_quiet # before a flood nothing of ours runs but an idle agent
  pin_napi || log "warning: could not pin the NAPI thread"
  local attach counter_before counter_after prog_id
  attach=$(xdp_attachment)
  prog_id=$("$PYTHON" -c 'import json,sys; x=json.loads(sys.argv[1]); print((x or {}).get("prog", {}).get("id", ""))' "$attach")
  ((BPF_STATS_ON)) || prog_id=
  counter_before=$(filter_counter "$config")
  snapshot "$WORK/before.json" "$tool_pid" "$prog_id"
  # timeout signals trafgen's whole process group: the parent and its sending child.
  in_tx timeout -s INT -k 10 "$RUN_SECONDS" \
    nice -n "$NICE" trafgen -o "$IF_TX" -i "$TRAFGEN_CFG" -P 1 "${RATE_ARGS[@]}" --no-sock-mem -Q \
    >"$WORK/trafgen.out" 2>&1 &
  TRAFGEN_PID=$!
  wait "$TRAFGEN_PID"
  TRAFGEN_PID=
  sleep 0.2 # the receiver drains its ring
  snapshot "$WORK/after.json" "$tool_pid" "$prog_id"
  counter_after=$(filter_counter "$config")
  "$PYTHON" - "$config" "$round" "$order" "$WORK/before.json" "$WORK/after.json" \
    "$WORK/trafgen.out" "$counter_before" "$counter_after" "$attach" "$(getconf CLK_TCK)" \
    "$RX_CPU" "$WAITED" "${BUSY_BEFORE:-}" >>"$RUNS" <<'PY'
import json, re, sys
config, rnd, order, bpath, apath, tpath, cb, ca, attach, hz, rx_cpu, waited, busy = sys.argv[1:14]
hz = int(hz)
b, a = json.load(open(bpath)), json.load(open(apath))
out = open(tpath).read()
m = re.search(r"(\d+) packets outgoing", out)
t = re.search(r"(\d+) sec, (\d+) usec on CPU", out)
offered = int(m.group(1)) if m else None
seconds = int(t.group(1)) + int(t.group(2)) / 1e6 if t else None
def d(path):
    x, y = b, a
    for k in path:
        x, y = (x or {}).get(k), (y or {}).get(k)
    return None if x is None or y is None else y - x
cpus = {c: {k: (a["cpus"][c][k] - b["cpus"][c][k]) * 1e9 / hz for k in ("busy", "softirq", "steal")}
        for c in a["cpus"] if c in b["cpus"]}
cb, ca = json.loads(cb or "{}"), json.loads(ca or "{}")
filt = ca.get("packets") - cb.get("packets", 0) if "packets" in ca else None
rx = d(["rx_ethtool", "rx_queue_0_xdp_packets"])
udp = a.get("udp", {}), b.get("udp", {})
delivered = sum(udp[0].get(k, 0) - udp[1].get(k, 0) for k in ("InDatagrams", "NoPorts", "InErrors"))
prog = None
if a.get("prog") and b.get("prog"):
    prog = {"id": a["prog"]["id"], "name": a["prog"]["name"],
            "run_cnt": a["prog"]["run_cnt"] - b["prog"]["run_cnt"],
            "run_time_ns": a["prog"]["run_time_ns"] - b["prog"]["run_time_ns"]}
tool = None
if a.get("tool_ticks") is not None and b.get("tool_ticks") is not None:
    tool = (a["tool_ticks"] - b["tool_ticks"]) * 1e9 / hz
rec = {
    "config": config, "round": int(rnd), "order": int(order),
    "seconds": seconds, "offered": offered,
    "tx_packets": d(["tx_link", "tx_packets"]),
    "ring_full_retries": d(["tx_link", "tx_dropped"]),
    "rx_napi_packets": rx,
    "xdp_dropped": d(["rx_ethtool", "rx_queue_0_xdp_drops"]),
    "filter_dropped": filt,
    "filter_counters": {"before": cb, "after": ca},
    "delivered_udp": delivered,
    "udp": {k: udp[0].get(k, 0) - udp[1].get(k, 0) for k in udp[0]},
    "rx_dropped": d(["rx_link", "rx_dropped"]),
    "napi_cpu_ns": a["napi_ns"] - b["napi_ns"] if a["napi_pids"] == b["napi_pids"] else None,
    "napi_pids": a["napi_pids"],
    "cpus": cpus, "rx_cpu": rx_cpu,
    "tool_cpu_ns": tool,
    "xdp_prog_stats": prog,
    "xdp_attachment": json.loads(attach) if attach else None,
    "trafgen_error": None if m else out.strip()[-300:],
    "quiet_wait_seconds": int(waited), "busy_before_pct": int(busy) if busy else None,
}
print(json.dumps(rec))
PY
}

# ---------------------------------------------------------------------------------------------
# Rounds: every configuration once per round, the order rotated by one every round.

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
START=$EPOCHREALTIME
run_rotated_rounds "$ROUNDS" "$CONFIGS" flood
DURATION=$("$PYTHON" -c "print(round(${EPOCHREALTIME/,/.} - ${START/,/.}))")

# ---------------------------------------------------------------------------------------------
# Output.

for c in "${!SKIP_REASON[@]}"; do printf '%s\t%s\n' "$c" "${SKIP_REASON[$c]}"; done >"$WORK/skips.tsv"
printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}" >"$WORK/notes.txt"
"$PYTHON" - "$RUNS" "$OUT" "$WORK/skips.tsv" "$WORK/notes.txt" <<PY
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
skips = dict(l.rstrip("\n").split("\t", 1) for l in open(sys.argv[3]) if "\t" in l)
notes = [l.rstrip("\n") for l in open(sys.argv[4]) if l.strip()]
meta = {
    "configs": "$CONFIGS".split(), "rounds": $ROUNDS, "seconds_per_run": $RUN_SECONDS,
    "rate": "$RATE", "rx_cpu": $RX_CPU, "tx_cpu": 0, "cpus": $NCPU,
    "frame_bytes": 60, "udp_port": $PORT, "nice": $NICE, "bpf_stats": bool($BPF_STATS_ON),
    "quiet_pct": $QUIET_PCT, "quiet_max": $QUIET_MAX, "quiet_budget": $QUIET_BUDGET, "quiet_spent": $QUIET_SPENT,
    "trafgen": "trafgen $TRAFGEN_VERSION: -P 1 ${RATE_ARGS[*]} --no-sock-mem -Q",
    "xdp_filter_load": "xdp-filter load $IF_RX${FILTER_FEATURES:+ --features $FILTER_FEATURES}; xdp-filter port $PORT --proto udp --mode dst",
    "xdp_filter_version": "$(xdp-filter load --version 2>/dev/null | head -n 1)",
    "iptables": "$(iptables -V 2>/dev/null): -t raw -I PREROUTING -i $IF_RX -p udp --dport $PORT -j DROP",
    "nftables": "$(nft -v 2>/dev/null): netdev $NFT_TABLE, ingress hook on $IF_RX, priority -500, udp dport $PORT counter drop",
    "vigil_agent": "vigil-agent --api unix://$SOCK --policy-dir \$TMP/policies --pin-dir $PIN_DIR",
    "vigil_policy": open("$POLICY_DIR/bench-drop.yaml").read(),
    "loadavg_start": "$LOADAVG_START", "loadavg_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "duration_seconds": $DURATION,
}
json.dump({"meta": meta, "skipped": skips, "notes": notes, "runs": runs}, open(sys.argv[2], "w"), indent=1)
PY
log "done in ${DURATION}s: $(wc -l <"$RUNS") runs"
exit 0
