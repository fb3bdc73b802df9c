#!/usr/bin/env bash
# End to end: Prometheus metrics. Starts the real vigil-agent with --metrics-addr on loopback
# and Debian's Prometheus server (the binary `make deps` puts in .tools/), which scrapes it every
# second. Then runs a known workload and asks Prometheus, through its HTTP API and PromQL, for
# the values it must have scraped:
#   - an audit-mode exec rule matched by exactly 7 execs of a marker binary;
#   - exactly 20 UDP packets of a known size dropped by an XDP rule on a veth pair;
#   - exactly 10 UDP datagrams of 500 bytes sent from a cgroup shaped like a pod's (its pod
#     named by a kubelet-style pod log tree), as the pod's egress bytes and packets;
#   - an OOM kill in a memory cgroup of the test's own with a 32 MiB limit;
#   - the agent's own CPU and memory, ring buffer sizes, build info, and the scrape being up.
# Everything runs on loopback or the test's own veth pair and namespace.
set -euo pipefail

BUILD=${1:?usage: metrics_e2e.sh BUILD_DIR PROMETHEUS_BINARY}
PROMETHEUS=${2:?usage: metrics_e2e.sh BUILD_DIR PROMETHEUS_BINARY}
AGENT=$BUILD/agent/vigil-agent
VIGIL=$BUILD/cli/vigil
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

skip_unless_root
if [ ! -x "$PROMETHEUS" ]; then
  echo "FAIL: the Prometheus server is not at $PROMETHEUS: run \`make deps\`" >&2
  exit 1
fi
cgroot=$(cgroup2_root)
[ -n "$cgroot" ] || { echo "SKIP: no cgroup2 mount in /proc/self/mountinfo"; exit 77; }

stale_runs vigil-met-e2e | while read -r pid old; do
  ip netns del "vigil-met-$pid" 2>/dev/null || true
  [ -d "$cgroot/vigil-met-e2e-$pid" ] && find "$cgroot/vigil-met-e2e-$pid" -depth -type d -exec rmdir {} + 2>/dev/null
  for memcg in /sys/fs/cgroup/*/vigil-met-e2e-"$pid"-oom "$cgroot/vigil-met-e2e-$pid-oom"; do
    [ -d "$memcg" ] && rmdir "$memcg" 2>/dev/null
  done
  umount -l "$old/bpffs" 2>/dev/null || true
  rm -rf "$old"
done
tmp=$(mktemp -d "/tmp/vigil-met-e2e-$$.XXXXXX")
pins=$tmp/bpffs/vigil
sock=$tmp/vigil.sock
agent_pid=
prom_pid=
sink_pid=
netns=vigil-met-$$
veth_host=vgm$$h
veth_peer=vgm$$p
net=10.252.$(($$ % 250))
host_ip=$net.1
ns_ip=$net.2
cg=$cgroot/vigil-met-e2e-$$
oom_cg=
cleanup() {
  for pid in $prom_pid $sink_pid; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
    kill "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
  fi
  for pid in $prom_pid $sink_pid; do wait "$pid" 2>/dev/null || true; done
  "$AGENT" --cleanup --pin-dir "$pins" >/dev/null 2>&1 || true
  ip link del "$veth_host" 2>/dev/null || true
  ip netns del "$netns" 2>/dev/null || true
  [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
  [ -n "$oom_cg" ] && [ -d "$oom_cg" ] && rmdir "$oom_cg" 2>/dev/null
  umount -l "$tmp/bpffs" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/bpffs" "$tmp/policies" "$tmp/pods"
mount -t bpf bpf "$tmp/bpffs"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- A veth pair into a namespace of our own, for the XDP rule.
ip netns add "$netns"
ip link add "$veth_host" type veth peer name "$veth_peer"
ip link set "$veth_peer" netns "$netns"
ip addr add "$host_ip/30" dev "$veth_host"
ip link set "$veth_host" up
ip -n "$netns" addr add "$ns_ip/30" dev "$veth_peer"
ip -n "$netns" link set "$veth_peer" up

# --- A pod: its cgroup (containerd, cgroupfs driver, under our own top cgroup) and its logs.
uid=$(python3 -c 'import uuid; print(uuid.uuid4())')
cid=$(python3 -c 'import os; print(os.urandom(32).hex())')
pod_cg=$cg/kubepods/besteffort/pod$uid/$cid
mkdir -p "$pod_cg"
mkdir -p "$tmp/pods/metrics_sender_$uid/app"
: >"$tmp/pods/metrics_sender_$uid/app/0.log"

# --- The policies: an audit exec rule on a marker binary, an XDP drop rule on the veth.
marker=$tmp/vigil-met-marker
cp "$(type -P true)" "$marker"
xdp_port=15911
cat >"$tmp/policies/metrics.yaml" <<YAML
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: metrics-e2e}
spec:
  mode: audit
  exec:
    - name: marker
      action: kill
      match: {binaries: [$marker]}
---
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: metrics-e2e-xdp}
spec:
  xdp:
    interfaces: [$veth_host]
    rules:
      - name: drop-udp
        match: {protocol: udp, destinationPorts: [$xdp_port]}
YAML

# --- The agent, metrics on a loopback port of its choosing.
"$AGENT" --api "unix://$sock" --policy-dir "$tmp/policies" --pin-dir "$pins" \
  --flow-interfaces "$veth_host" --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 \
  --pod-log-dir "$tmp/pods" --container-log-dir "$tmp/containers" >"$tmp/agent.log" 2>&1 &
agent_pid=$!
wait_for_agent
target=$(python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))["metrics_address"]
print(m.removeprefix("http://").removesuffix("/metrics"))' "$tmp/status.json")
case $target in 127.0.0.1:[1-9]*) ;; *) fail "vigil status shows no metrics address (got '$target')" ;; esac
vigil status --no-color | grep -q "^Metrics: *http://$target/metrics" ||
  fail "vigil status does not show the metrics address"
for _ in $(seq 1 50); do
  vigil status --no-color | grep -q "XDP filter: enforcing" && break
  sleep 0.1
done
vigil status --no-color | grep -q "XDP filter: enforcing" || fail "the XDP policy was not put in force"

# --- Prometheus, scraping the agent every second.
prom_port=$(free_port)
cat >"$tmp/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: vigil
    static_configs: [{targets: ["$target"]}]
YAML
"$PROMETHEUS" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$prom_port/-/ready" >/dev/null 2>&1 && break
  kill -0 "$prom_pid" 2>/dev/null || { tail -20 "$tmp/prometheus.log" >&2; fail "prometheus exited"; }
  sleep 0.2
done

# promql EXPR: the value of the query's single sample, or "none".
promql() {
  curl -fsG "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if len(r) == 1 else "none" if not r else "many:%d" % len(r))'
}
# expect NAME EXPR VALUE: waits up to 20 s for Prometheus to return VALUE for EXPR.
expect() {
  local name=$1 expr=$2 want=$3 got=
  for _ in $(seq 1 100); do
    got=$(promql "$expr" || echo error)
    [ "$got" = "$want" ] && { echo "ok: $name: $expr = $got"; return 0; }
    sleep 0.2
  done
  fail "$name: Prometheus returned '$got' for $expr, expected $want"
}

expect "the scrape is up" 'up{job="vigil"}' 1

# --- The workload.
for _ in 1 2 3 4 5 6 7; do "$marker"; done
ip netns exec "$netns" python3 - "$host_ip" "$xdp_port" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20):
    s.sendto(b"x" * 100, (sys.argv[1], int(sys.argv[2])))
PY
sink_port=$(free_port)
python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1])))
while True: s.recv(65536)' "$sink_port" &
sink_pid=$!
sleep 0.3
(
  echo "$BASHPID" >"$pod_cg/cgroup.procs"
  exec python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(10):
    s.sendto(b"p" * 500, ("127.0.0.1", int(sys.argv[1])))' "$sink_port"
) || fail "the sender in the pod cgroup failed"

# A process that stays in the pod, for its memory gauge.
(
  echo "$BASHPID" >"$pod_cg/cgroup.procs"
  exec sleep 60
) &
sink_pid="$sink_pid $!"

# One OOM kill: a process that writes 128 MiB in a memory cgroup limited to 32 MiB, cgroup
# v1's memory controller on a hybrid host (found in mountinfo), else cgroup v2's.
v1_memory=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") {
  if ($(i + 1) == "cgroup" && $NF ~ /(^|,)memory(,|$)/) print $5; break } }' /proc/self/mountinfo |
  head -n 1)
if [ -n "$v1_memory" ]; then
  oom_cg=$v1_memory/vigil-met-e2e-$$-oom
  mkdir "$oom_cg"
  echo $((32 << 20)) >"$oom_cg/memory.limit_in_bytes"
  echo $((32 << 20)) >"$oom_cg/memory.memsw.limit_in_bytes" 2>/dev/null || true  # swap on
elif grep -qw memory "$cgroot/cgroup.subtree_control"; then
  oom_cg=$cgroot/vigil-met-e2e-$$-oom
  mkdir "$oom_cg"
  echo $((32 << 20)) >"$oom_cg/memory.max"
  echo 0 >"$oom_cg/memory.swap.max" 2>/dev/null || true
fi
if [ -n "$oom_cg" ]; then
  if (
    echo "$BASHPID" >"$oom_cg/cgroup.procs"
    exec python3 -c 'data = b"x" * (128 << 20)'
  ) 2>/dev/null; then
    fail "the 128 MiB writer survived a 32 MiB memory limit"
  fi
else
  echo "note: no memory controller on cgroup v1 or v2: the OOM kill is not exercised"
fi

# --- What Prometheus must have scraped.
expect "exec audits by rule" \
  'vigil_exec_policy_actions_total{policy="metrics-e2e",rule="marker",action="audit"}' 7
expect "exec events seen" 'vigil_events_total{type="exec"} >= bool 7' 1
expect "XDP drops by rule" \
  'vigil_xdp_packets_total{policy="metrics-e2e-xdp",rule="drop-udp",action="drop"}' 20
# 100 bytes of payload + UDP 8 + IPv4 20 + Ethernet 14, as the XDP counters count frames.
expect "XDP dropped bytes" \
  'vigil_xdp_bytes_total{policy="metrics-e2e-xdp",rule="drop-udp",action="drop"}' 2840
# 500 bytes of payload + UDP 8 + IPv4 20 per datagram, IP bytes as cgroup_skb counts them.
expect "pod egress bytes" \
  'vigil_network_bytes_total{namespace="metrics",pod="sender",direction="egress"}' 5280
expect "pod egress packets" \
  'vigil_network_packets_total{namespace="metrics",pod="sender",direction="egress"}' 10
expect "node egress covers the pod" \
  'vigil_node_network_bytes_total{direction="egress"} >= bool 5280' 1
expect "one pod with series" 'vigil_metrics_pods{series="own"}' 1
expect "pod memory" 'vigil_memory_rss_bytes{namespace="metrics",pod="sender"} > bool 100000' 1
if [ -n "$oom_cg" ]; then
  # At least: the OOM killer may choose processes elsewhere on the node too.
  expect "the OOM kill" 'vigil_oom_kills_total >= bool 1' 1
fi
expect "ring buffer size" 'vigil_ring_buffer_size_bytes{ring="events"}' 8388608
expect "agent memory" 'vigil_agent_resident_memory_bytes > bool 1e6' 1
expect "agent CPU" 'sum(vigil_agent_cpu_seconds_total) > bool 0' 1
expect "build info" 'count(vigil_build_info{version!=""})' 1
expect "no lost exec events" 'vigil_events_lost_total{type="exec"}' 0
# Every counter ends in _total (the convention), checked over everything scraped.
curl -fsG "http://127.0.0.1:$prom_port/api/v1/metadata" | python3 -c '
import json, sys
meta = json.load(sys.stdin)["data"]
bad = [n for n, m in meta.items() if n.startswith("vigil_") and m[0]["type"] == "counter" and not n.endswith("_total")]
assert not bad, bad
print("ok: %d vigil_ metric families, every counter named *_total" % sum(n.startswith("vigil_") for n in meta))
' || fail "a counter does not end in _total"

kill "$agent_pid"
wait "$agent_pid" || fail "vigil-agent did not stop cleanly on SIGTERM"
agent_pid=
echo "PASS: Prometheus scraped the expected values"
