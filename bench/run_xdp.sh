#!/usr/bin/env bash
# XDP benchmarks: what does Vigil's packet filter cost, next to a bare XDP_DROP, xdp-filter,
# iptables and nftables?
#
#   bench/run_xdp.sh [BUILD_DIR]     (BUILD_DIR defaults to "build"; `make bench` calls this)
#
# Two parts, one after the other, and writes bench/results/xdp.{md,json}:
#   cost   vigil_xdp_cost (bench/xdp_cost.cpp): ns per packet through BPF_PROG_TEST_RUN of the
#          floor (a bare XDP_DROP), xdp-filter's programs and Vigil's data path with 10 to
#          100,000 source-CIDR rules, interleaved in rounds
#   flood  bench/xdp_flood.sh: a UDP flood over a veth pair between two network namespaces,
#          dropped by nothing, Vigil (the real agent), xdp-filter, iptables or nftables
# Missed targets are reported (PASS/FAIL in the summary), never turned into a failing exit
# status. The script fails only when neither part can run.
#
# Environment (the flood's own settings, BENCH_XDP_SECONDS and friends, are listed in
# bench/xdp_flood.sh):
#   BENCH_XDP_PARTS       parts to run (default "cost flood")
#   BENCH_XDP_REPEAT      runs per BPF_PROG_TEST_RUN call (default 1000000)
#   BENCH_XDP_COST_ROUNDS rounds of the cost part (default 5)
#   BENCH_XDP_SIZES       Vigil rule set sizes in CIDRs (default 10,1000,10000,100000)
#   BENCH_XDP_COST_CPU    CPU the cost part runs on (default: the last CPU)
#   BENCH_RESULTS_DIR     where to write results (default bench/results next to this script)
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
resolve_build_dir "${1:-build}"

PARTS=${BENCH_XDP_PARTS:-"cost flood"}
REPEAT=${BENCH_XDP_REPEAT:-1000000}
COST_ROUNDS=${BENCH_XDP_COST_ROUNDS:-5}
SIZES=${BENCH_XDP_SIZES:-10,1000,10000,100000}
COST_CPU=${BENCH_XDP_COST_CPU:-$(($(nproc) - 1))}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$SCRIPT_DIR/results}
COST=$BUILD_DIR/bench/vigil_xdp_cost

log() { printf '[bench-xdp %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for p in $PARTS; do
  case "$p" in cost | flood) ;; *) die "bad BENCH_XDP_PARTS entry '$p'" ;; esac
done
((EUID == 0)) || die "must run as root (BPF programs, network namespaces)"
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || die "python3 is required"

WORK=$(mktemp -d /tmp/vigil-bench-xdp-run.XXXXXX) || die "mktemp failed"
trap 'rm -rf "$WORK"' EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM
START=$EPOCHREALTIME

bench_lock

# The binaries, built if missing (a part whose binaries cannot be built is reported, not run).
build() { cmake --build "$BUILD_DIR" --target "$@" -j "$(nproc)" >"$WORK/build.log" 2>&1; }
COST_SKIP=
FLOOD_SKIP=
has_part() { [[ " $PARTS " == *" $1 "* ]]; }
if has_part cost && [[ ! -x "$COST" ]]; then
  log "building vigil_xdp_cost"
  build vigil_xdp_cost || COST_SKIP="cannot build vigil_xdp_cost: $(grep -m1 -i error "$WORK/build.log")"
fi
if has_part flood && { [[ ! -x "$BUILD_DIR/agent/vigil-agent" ]] || [[ ! -x "$BUILD_DIR/cli/vigil" ]]; }; then
  log "building vigil-agent and vigil"
  build vigil-agent vigil || log "warning: cannot build the agent or the CLI; the flood reports the vigil configuration as not run"
fi
has_part cost || COST_SKIP="not in BENCH_XDP_PARTS"
has_part flood || FLOOD_SKIP="not in BENCH_XDP_PARTS"

# Part 1: per-packet cost. It goes first: the flood turns on BPF run-time statistics, which would
# add their own clock reads to every test run.
echo '{}' >"$WORK/cost.json"
if [[ -z "$COST_SKIP" ]]; then
  log "cost: vigil_xdp_cost --rounds $COST_ROUNDS --repeat $REPEAT --sizes $SIZES --cpu $COST_CPU"
  if ! "$COST" --rounds "$COST_ROUNDS" --repeat "$REPEAT" --sizes "$SIZES" --cpu "$COST_CPU" \
    >"$WORK/cost.json" 2> >(tee "$WORK/cost.log" >&2); then
    COST_SKIP="vigil_xdp_cost failed: $(tail -n 2 "$WORK/cost.log" | tr '\n' ' ')"
    echo '{}' >"$WORK/cost.json"
  fi
fi
[[ -n "$COST_SKIP" ]] && log "cost: NOT RUN: $COST_SKIP"

# Part 2: the flood.
echo '{}' >"$WORK/flood.json"
if [[ -z "$FLOOD_SKIP" ]]; then
  log "flood: bench/xdp_flood.sh"
  if ! "$SCRIPT_DIR/xdp_flood.sh" "$BUILD_DIR" "$WORK/flood.json"; then
    FLOOD_SKIP="bench/xdp_flood.sh could not run (see its log above)"
    echo '{}' >"$WORK/flood.json"
  fi
fi
[[ -n "$FLOOD_SKIP" ]] && log "flood: NOT RUN: $FLOOD_SKIP"
[[ -n "$COST_SKIP" && -n "$FLOOD_SKIP" ]] && die "neither part could run"

commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo none)
[[ -n "$(git -C "$REPO_DIR" status --porcelain 2>/dev/null | head -n1)" ]] && commit+="+dirty"
cat >"$WORK/meta.json" <<EOF
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "commit": "$commit",
  "kernel": "$(uname -r)",
  "cpus": $(nproc),
  "cpu_model": "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)",
  "duration_seconds": $("$PYTHON" -c "print(round(${EPOCHREALTIME/,/.} - ${START/,/.}))")
}
EOF
printf '%s' "$COST_SKIP" >"$WORK/cost.skip"
printf '%s' "$FLOOD_SKIP" >"$WORK/flood.skip"

# ---------------------------------------------------------------------------------------------
# Summary.

cat >"$WORK/summarize.py" <<'PY'
import json, statistics, sys

work, out_json, out_md = sys.argv[1:4]
meta = json.load(open(f"{work}/meta.json"))
cost = json.load(open(f"{work}/cost.json"))
flood = json.load(open(f"{work}/flood.json"))
cost_skip = open(f"{work}/cost.skip").read().strip() or None
flood_skip = open(f"{work}/flood.skip").read().strip() or None

MAX_FLOOR_RATIO = 2.0
TARGET_CIDRS = 100000


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    return a / b if a is not None and b else None


cases = cost.get("cases", [])


def case(config, family, packet):
    for c in cases:
        if c["config"] == config and c["family"] == family and c["packet"] == packet:
            return c
    return None


def med_ns(c):
    return c.get("median_ns") if c and not c.get("error") else None


floor = {f: med_ns(case("bare XDP_DROP", f, "any")) for f in ("ipv4", "ipv6")}
sizes = sorted({c["rule_count"] for c in cases if c["group"] == "vigil" and c["config"].endswith("CIDRs")})
big = f"vigil {TARGET_CIDRS} CIDRs"
kinds = [("ipv4", "match"), ("ipv4", "no match"), ("ipv6", "match"), ("ipv6", "no match")]

# --- targets ----------------------------------------------------------------------------------
targets = []
if cost_skip:
    targets.append({"name": "floor", "result": "NOT RUN", "detail": cost_skip})
    targets.append({"name": "xdp-filter", "result": "NOT RUN", "detail": cost_skip})
else:
    parts, ok, have = [], True, True
    for fam, pkt in kinds:
        v, f = med_ns(case(big, fam, pkt)), floor[fam]
        if v is None or f is None:
            have = False
            parts.append(f"{fam} {pkt}: not measured")
            continue
        r = v / f
        ok = ok and r <= MAX_FLOOR_RATIO
        parts.append(f"{'IPv4' if fam == 'ipv4' else 'IPv6'} {pkt}: {v:.0f} ns = {r:.1f}x the floor's {f:.0f} ns")
    targets.append({"name": "floor", "result": ("PASS" if ok else "FAIL") if have else "NOT RUN",
                    "detail": "; ".join(parts)})
    parts, ok, have = [], True, True
    for fam in ("ipv4", "ipv6"):
        v, x = med_ns(case(big, fam, "match")), med_ns(case("xdpfilt_alw_ip", fam, "match"))
        if v is None or x is None:
            have = False
            parts.append(f"{fam}: not measured")
            continue
        ok = ok and v < x
        parts.append(f"{'IPv4' if fam == 'ipv4' else 'IPv6'}: Vigil {v:.0f} ns vs xdp-filter {x:.0f} ns ({v / x:.2f}x)")
    targets.append({"name": "xdp-filter", "result": ("PASS" if ok else "FAIL") if have else "NOT RUN",
                    "detail": "; ".join(parts)})
wrong = [c for c in cases if c.get("verdicts") and not c.get("verdict_ok")]

# --- flood --------------------------------------------------------------------------------------
runs = flood.get("runs", [])
configs = [c for c in flood.get("meta", {}).get("configs", []) if any(r["config"] == c for r in runs)]


def per_packet(r, key):
    n = r.get("rx_napi_packets")
    return r[key] / n if r.get(key) is not None and n else None


def prog_ns(r):
    p = r.get("xdp_prog_stats")
    return p["run_time_ns"] / p["run_cnt"] if p and p.get("run_cnt") else None


def others_rx(r):
    """Share of the receiver's CPU that other work used during the run (0..1)."""
    c = (r.get("cpus") or {}).get(str(r.get("rx_cpu")))
    if not c or r.get("napi_cpu_ns") is None or not r.get("seconds"):
        return None
    return max(0.0, (c["busy"] - r["napi_cpu_ns"]) / (r["seconds"] * 1e9))


def paired(rs, base_by_round):
    """Median over rounds of the run's receiver CPU per packet over the baseline's of its round."""
    v = []
    for r in rs:
        b = base_by_round.get(r["round"])
        x = per_packet(r, "napi_cpu_ns")
        if b and x is not None:
            v.append(x / b)
    return med(v)


# A run during which other work used more than this share of the receiver's CPU is disturbed.
DISTURBED = 0.25

# IFLA_XDP_ATTACHED values as `ip -j link` reports them.
XDP_MODES = {1: "native", 2: "generic", 3: "offload", 4: "several"}
flood_rows = []
base_cpu = med([per_packet(r, "napi_cpu_ns") for r in runs if r["config"] == "baseline"])
base_by_round = {r["round"]: per_packet(r, "napi_cpu_ns") for r in runs if r["config"] == "baseline"}
for c in configs:
    rs = [r for r in runs if r["config"] == c]
    secs = [r["seconds"] for r in rs]
    row = {
        "config": c,
        "runs": len(rs),
        "offered_pps": med([r["offered"] / r["seconds"] for r in rs if r.get("offered") and r.get("seconds")]),
        "dropped_pps": med([r["filter_dropped"] / r["seconds"] for r in rs if r.get("filter_dropped") is not None and r.get("seconds")]),
        "offered": sum(r.get("offered") or 0 for r in rs),
        "received": sum(r.get("rx_napi_packets") or 0 for r in rs),
        "filter_dropped": sum(r["filter_dropped"] for r in rs) if all(r.get("filter_dropped") is not None for r in rs) else None,
        "xdp_dropped": sum(r.get("xdp_dropped") or 0 for r in rs),
        "delivered_udp": sum(r.get("delivered_udp") or 0 for r in rs),
        "rx_cpu_ns_per_packet": med([per_packet(r, "napi_cpu_ns") for r in rs]),
        "rx_cpu_min": min([x for x in (per_packet(r, "napi_cpu_ns") for r in rs) if x is not None], default=None),
        "rx_cpu_max": max([x for x in (per_packet(r, "napi_cpu_ns") for r in rs) if x is not None], default=None),
        "prog_ns_per_packet": med([prog_ns(r) for r in rs]),
        "prog_name": next((r["xdp_prog_stats"]["name"] for r in rs if r.get("xdp_prog_stats")), None),
        "xdp_mode": next((XDP_MODES.get(r["xdp_attachment"].get("mode"), str(r["xdp_attachment"].get("mode")))
                          for r in rs if r.get("xdp_attachment")), None),
        "ring_full_retries": sum(r.get("ring_full_retries") or 0 for r in rs),
        "tool_cpu_ms": sum(r["tool_cpu_ns"] for r in rs if r.get("tool_cpu_ns") is not None) / 1e6 if any(r.get("tool_cpu_ns") is not None for r in rs) else None,
        "seconds": sum(secs),
    }
    row["rx_cpu_vs_baseline"] = ratio(row["rx_cpu_ns_per_packet"], base_cpu)
    row["rx_cpu_vs_baseline_paired"] = paired(rs, base_by_round)
    row["others_on_rx_cpu"] = med([others_rx(r) for r in rs])
    quiet = [r for r in rs if others_rx(r) is not None and others_rx(r) <= DISTURBED]
    row["quiet_runs"] = len(quiet)
    row["rx_cpu_quiet"] = med([per_packet(r, "napi_cpu_ns") for r in quiet])
    flood_rows.append(row)

summary = {"targets": targets, "wrong_verdicts": [f"{c['config']} {c['family']} {c['packet']}" for c in wrong],
           "flood": flood_rows, "floor_ns": floor}
json.dump({"meta": meta, "summary": summary, "cost": cost, "cost_skipped": cost_skip,
           "flood": flood, "flood_skipped": flood_skip}, open(out_json, "w"), indent=1)

# --- markdown -----------------------------------------------------------------------------------
L = []
w = L.append
w("# XDP benchmarks")
w("")
w(f"Generated by `bench/run_xdp.sh` on {meta['date']} (commit `{meta['commit']}`). Do not edit by hand; "
  "see [bench/README.md](../README.md) for what is measured and how to read it.")
w("")
w("| | |")
w("|---|---|")
w(f"| Kernel | {meta['kernel']} |")
w(f"| CPU | {meta['cpus']} x {meta['cpu_model']} |")
if cases:
    w(f"| Per-packet cost | `vigil_xdp_cost`: BPF_PROG_TEST_RUN, {cost['repeat']:,} runs per call, {cost['rounds']} round{'s' if cost['rounds'] != 1 else ''} "
      f"(order rotated every round), pinned to CPU {cost['pinned_cpu']}, median of the rounds |")
fm = flood.get("meta", {})
if fm:
    rate = "as fast as the receiver takes them" if fm["rate"] == "max" else f"{int(fm['rate']):,} packets/s"
    w(f"| Flood | {fm['frame_bytes']}-byte UDP frames to port {fm['udp_port']} over a veth pair, {rate}; "
      f"{fm['rounds']} round{'s' if fm['rounds'] != 1 else ''} of {fm['seconds_per_run']} s per configuration (order rotated every round); "
      f"`{fm['trafgen']}` on CPU {fm['tx_cpu']}, the receiver's NAPI thread on CPU {fm['rx_cpu']} (both at nice {fm['nice']}) |")
    w(f"| xdp-filter | {fm['xdp_filter_version']} |")
w(f"| Load average at start / end of the flood | {fm.get('loadavg_start', '-')} / {fm.get('loadavg_end', '-')} |")
w(f"| Duration | {meta['duration_seconds']} s |")
w("")
w("## Targets")
w("")
t = {x["name"]: x for x in targets}
w(f"- **At {TARGET_CIDRS:,} rules Vigil costs at most {MAX_FLOOR_RATIO:g}x the floor (a bare XDP_DROP): "
  f"{t['floor']['result']}** ({t['floor']['detail']})")
w(f"- **At {TARGET_CIDRS:,} rules Vigil costs less than xdp-filter's exact-address match: "
  f"{t['xdp-filter']['result']}** ({t['xdp-filter']['detail']}; xdp-filter as `xdp-filter load --features ipv4,ipv6`, "
  "program xdpfilt_alw_ip, one address per family)")
if cases:
    if wrong:
        w(f"- **Verdicts: FAIL**: {', '.join(summary['wrong_verdicts'])} returned an unexpected XDP action.")
    else:
        w("- Verdicts: every program returned the expected action on every run (XDP_DROP for a packet a rule matches, XDP_PASS otherwise).")
if cost.get("bpf_stats_were_on"):
    w("- Caution: kernel BPF run-time statistics were on during the cost measurement (another process held them on); "
      "every figure includes two extra clock reads per run.")
w("")

w("## Per-packet cost (BPF_PROG_TEST_RUN)")
w("")
if cost_skip:
    w(f"NOT RUN: {cost_skip}")
else:
    w("ns per packet as the kernel measures it over one BPF_PROG_TEST_RUN call (median of the rounds). "
      "The floor is a bare `return XDP_DROP`: the test-run loop itself, before any program looks at the packet. "
      "x floor = median / floor of the same address family; + floor = median - floor.")
    w("")
    w("### Vigil by rule set size")
    w("")
    w("| Program | Rules | IPv4 match | IPv4 no match | IPv6 match | IPv6 no match |")
    w("|---|---|---:|---:|---:|---:|")

    def cell(c):
        v = med_ns(c)
        if v is None:
            return "-"
        f = floor[c["family"]]
        return f"{v:.0f} ({v / f:.1f}x)" if f else f"{v:.0f}"

    w(f"| floor | bare XDP_DROP | {cell(case('bare XDP_DROP', 'ipv4', 'any'))} | | {cell(case('bare XDP_DROP', 'ipv6', 'any'))} | |")
    for name in ("xdpfilt_alw_ip", "xdpfilt_alw_all"):
        c0 = case(name, "ipv4", "match")
        if c0:
            w(f"| xdp-filter {name} | {c0['rules']} | " + " | ".join(cell(case(name, f, p)) for f, p in kinds) + " |")
    for n in sizes:
        name = f"vigil {n} CIDRs"
        c0 = case(name, "ipv4", "match")
        w(f"| Vigil | {c0['rules'] if c0 else n} | " + " | ".join(cell(case(name, f, p)) for f, p in kinds) + " |")
    w("")
    port = [("floor", case("bare XDP_DROP", "ipv4", "any"), None),
            ("xdp-filter xdpfilt_alw_udp", case("xdpfilt_alw_udp", "ipv4", "match"), case("xdpfilt_alw_udp", "ipv4", "no match")),
            ("Vigil", case("vigil UDP port 9", "ipv4", "match"), case("vigil UDP port 9", "ipv4", "no match"))]
    if any(m for _, m, _ in port[1:]):
        w("")
        w("One rule, UDP destination port 9 (the flood's rule), IPv4:")
        w("")
        w("| Program | Rules | To port 9 | To port 10 |")
        w("|---|---|---:|---:|")
        for name, m, o in port:
            if m:
                w(f"| {name} | {m['rules']} | {cell(m)} | {cell(o) if o else ''} |")
    w("")
    w("Cells: median ns (x floor). Vigil's rules: random source prefixes, IPv4 /24-/32 and IPv6 /48-/128 alternating, "
      "all `action: drop`; a match is an address inside one of them, a miss an address outside all.")
    w("")
    w("### Every case")
    w("")
    w("| Program | Rules | Family | Packet | Median ns | Min | Max | x floor | + floor | Verdict |")
    w("|---|---|---|---|---:|---:|---:|---:|---:|---|")
    for c in cases:
        v, f = med_ns(c), floor.get(c["family"])
        verdict = (c["verdicts"][-1] if c.get("verdicts") else "-") + ("" if c.get("verdict_ok") else " (UNEXPECTED)")
        if c.get("error"):
            verdict = "error: " + c["error"]
        w(f"| {c['config']} | {c['rules']} | {c['family']} | {c['packet']} | {fmt(v)} | {fmt(c.get('min_ns'))} | "
          f"{fmt(c.get('max_ns'))} | {fmt(ratio(v, f), 2)} | {fmt(v - f if v is not None and f else None)} | {verdict} |")
    w("")
    setups = cost.get("vigil_setups", [])
    if setups:
        w("### Vigil rule sets")
        w("")
        w("Compiled with `compileXdpRules` (no interface named), put into a data path of their own with "
          "`XdpDataPath::open({.pinDir = \"\", .attach = false})` and `apply()`.")
        w("")
        w("| Set | CIDRs | Rules | Policies | CIDRs per rule | Entries | Source trie prefixes | Compile ms | Load ms | Apply ms | Error |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for s in setups:
            w(f"| {s['config']} | {s['cidrs']:,} | {s['rules']:,} | {s['policies']} | {s['cidrs_per_rule'] or '-'} | "
              f"{s['entries']:,} | {s['source_trie_prefixes']:,} | {s['compile_ms']:.0f} | {s['open_ms']:.0f} | "
              f"{s['apply_ms']:.0f} | {s['error'] or ''} |")
        w("")
    for e in cost.get("errors", []):
        w(f"- Not measured: {e}")
    if cost.get("errors"):
        w("")

w("## End to end: a UDP flood over veth")
w("")
if flood_skip:
    w(f"NOT RUN: {flood_skip}")
else:
    w("Per configuration: medians over the rounds for rates and CPU per packet, sums for the counts. "
      "Offered = packets trafgen sent (it retries when the receiver's ring is full, so every offered packet reached the receiver). "
      "Dropped = the filter's own counter (Vigil's rule counter from `vigil status`, xdp-filter's port counter, the iptables rule "
      "or the nft counter). Delivered = packets that reached UDP in the receiver's namespace (InDatagrams + NoPorts + InErrors). "
      "Receiver CPU = run time of the receiver's NAPI thread (all of its receive work: XDP, GRO, netfilter, IP, UDP) per received packet. "
      "XDP program = the attached program's own run time per packet (kernel BPF statistics).")
    w("")
    w("| Config | Runs | Offered pps | Dropped pps | Offered | Dropped | Delivered | Receiver CPU ns/packet | min - max | vs baseline | paired | quiet runs | XDP program ns/packet | Ring-full retries |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in flood_rows:
        prog = f"{r['prog_ns_per_packet']:.0f} ({r['prog_name']}, {r['xdp_mode']})" if r["prog_ns_per_packet"] is not None else "-"
        w(f"| {r['config']} | {r['runs']} | {fmt(r['offered_pps'])} | {fmt(r['dropped_pps'])} | {fmt(r['offered'])} | "
          f"{fmt(r['filter_dropped'])} | {fmt(r['delivered_udp'])} | {fmt(r['rx_cpu_ns_per_packet'])} | "
          f"{fmt(r['rx_cpu_min'])} - {fmt(r['rx_cpu_max'])} | {fmt(r['rx_cpu_vs_baseline'], 2)} | "
          f"{fmt(r['rx_cpu_vs_baseline_paired'], 2)} | {fmt(r['rx_cpu_quiet'])} ({r['quiet_runs']}) | {prog} | "
          f"{fmt(r['ring_full_retries'])} |")
    w("")
    w("vs baseline = median / the baseline's median; paired = the median of per-round ratios (each run against the "
      f"baseline of its own round); quiet runs = the median receiver CPU per packet over the runs during which other work "
      f"used at most {DISTURBED:.0%} of the receiver's CPU (how many such runs). "
      "XDP program ns/packet includes the two clock reads the statistics add to every run.")
    w("")
    busy = med([others_rx(r) for r in runs])
    if busy is not None and busy > 0.25:
        w(f"- Caution: other work used {busy:.0%} of the receiver's CPU during the floods (median over the runs; see "
          "the Runs table). The NAPI thread then shares its core and caches with it: its CPU per packet rises and "
          "moves from run to run, and rates follow whichever side the machine slows down. Compare configurations "
          "within a round (paired), and rerun on a quiet machine for absolute figures.")
    for c, why in sorted(flood.get("skipped", {}).items()):
        w(f"- {c}: NOT RUN: {why}")
    w("")
    w("### Configurations")
    w("")
    w(f"- vigil: `{fm['vigil_agent']}` with this policy file:")
    w("")
    w("```yaml")
    w(fm["vigil_policy"].rstrip())
    w("```")
    w(f"- xdp-filter: `{fm['xdp_filter_load']}`")
    w(f"- iptables: `{fm['iptables']}`")
    w(f"- nftables: `{fm['nftables']}`")
    w("")
    w("### Runs")
    w("")
    w("| Round | Config | Seconds | Offered | Received | Dropped | XDP drops | Delivered | Receiver CPU ns/packet | XDP program ns/packet | Ring-full retries | Agent CPU ms | Others on the receiver's CPU | Waited s |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(runs, key=lambda r: (r["round"], r["order"])):
        w(f"| {r['round']} | {r['config']} | {fmt(r.get('seconds'), 2)} | {fmt(r.get('offered'))} | {fmt(r.get('rx_napi_packets'))} | "
          f"{fmt(r.get('filter_dropped'))} | {fmt(r.get('xdp_dropped'))} | {fmt(r.get('delivered_udp'))} | "
          f"{fmt(per_packet(r, 'napi_cpu_ns'))} | {fmt(prog_ns(r))} | {fmt(r.get('ring_full_retries'))} | "
          f"{fmt(r['tool_cpu_ns'] / 1e6 if r.get('tool_cpu_ns') is not None else None)} | "
          f"{fmt(100 * others_rx(r) if others_rx(r) is not None else None)}% | {r.get('quiet_wait_seconds', '-')} |")
    w("")
    errs = [r for r in runs if r.get("trafgen_error")]
    for r in errs:
        w(f"- Round {r['round']} {r['config']}: trafgen reported no count: {r['trafgen_error']}")
    for n in flood.get("notes", []):
        w(f"- {n}")
w("")
open(out_md, "w").write("\n".join(L))
PY

mkdir -p "$RESULTS_DIR"
"$PYTHON" "$WORK/summarize.py" "$WORK" "$RESULTS_DIR/xdp.json.tmp" "$RESULTS_DIR/xdp.md.tmp" || die "summary failed"
mv "$RESULTS_DIR/xdp.json.tmp" "$RESULTS_DIR/xdp.json"
mv "$RESULTS_DIR/xdp.md.tmp" "$RESULTS_DIR/xdp.md"
log "wrote $RESULTS_DIR/xdp.md and xdp.json"
awk '/^## /{show = ($0 == "## Targets")} show' "$RESULTS_DIR/xdp.md" >&2
exit 0
