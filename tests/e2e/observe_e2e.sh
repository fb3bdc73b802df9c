#!/usr/bin/env bash
# End to end: network flows through the real vigil-agent and `vigil observe`. Starts the agent
# with --flow-interfaces on the host end of a veth pair into a namespace of this test's own,
# puts known traffic over it (TCP from a client in a cgroup of the test's own, UDP to an open
# and to a closed port, ICMP echo, an nftables drop in the namespace, an XDP drop and an XDP
# audit), and checks every filter flag, the time window flags, follow and every output format
# of `vigil observe` against it; then `vigil traffic`, `vigil status`, and that nothing of the
# agent stays on the veth once it has stopped. Traffic never leaves the veth pair.
set -euo pipefail

BUILD=${1:?usage: observe_e2e.sh BUILD_DIR}
AGENT=$BUILD/agent/vigil-agent
VIGIL=$BUILD/cli/vigil
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

skip_unless_root
for tool in ip python3 bpftool tc; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
cgroot=$(cgroup2_root)
if [ -z "$cgroot" ]; then
  echo "SKIP: no cgroup2 mount in /proc/self/mountinfo"
  exit 77
fi

# Runs that died without their cleanup (their pid is gone): namespace, cgroup, bpffs, files.
stale_runs vigil-obs-e2e | while read -r pid old; do
  ip netns del "vigil-obs-$pid" 2>/dev/null || true
  rmdir "$cgroot/vigil-obs-e2e-$pid" 2>/dev/null || true
  umount -l "$old/bpffs" 2>/dev/null || true
  rm -rf "$old"
done
tmp=$(mktemp -d "/tmp/vigil-obs-e2e-$$.XXXXXX")
pins=$tmp/bpffs/vigil
sock=$tmp/vigil.sock
node=e2e-observe
agent_pid=
server_pids=
follow_pid=
client_pid=
netns=vigil-obs-$$
veth_host=vgo$$h
veth_peer=vgo$$p
net=10.253.$(($$ % 250))
host_ip=$net.1
ns_ip=$net.2
cg_name=vigil-obs-e2e-$$
cg=$cgroot/$cg_name
cg_rel=/$cg_name
cleanup() {
  if [ -n "$follow_pid" ]; then kill "$follow_pid" 2>/dev/null || true; fi
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
    kill -9 "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
  fi
  for pid in $server_pids $client_pid; do kill "$pid" 2>/dev/null || true; done
  [ -z "$client_pid" ] || wait "$client_pid" 2>/dev/null || true
  "$AGENT" --cleanup --pin-dir "$pins" >/dev/null 2>&1 || true
  ip link del "$veth_host" 2>/dev/null || true
  ip netns del "$netns" 2>/dev/null || true
  rmdir "$cg" 2>/dev/null || true
  umount -l "$tmp/bpffs" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir "$tmp/bpffs" "$tmp/policies" "$tmp/q"
mount -t bpf bpf "$tmp/bpffs"


# --- Set-up: veth pair, namespace (IPv6 off on both ends: no neighbour discovery noise), the
# client's cgroup, and servers in the namespace.
tcp_port=18080    # TCP server in the namespace
udp_port=15353    # UDP echo server in the namespace
nft_port=15998    # UDP into the namespace, dropped there by nftables
closed_port=15999 # UDP from the namespace to a host port nobody listens on
xdrop_port=15901  # UDP from the namespace, dropped by the XDP rule on the host end
xaudit_port=15902 # UDP from the namespace, matched by the audit-mode XDP rule
live_port=15777   # UDP into the namespace while `vigil observe -f` runs
echo1=$((0x4000 + $$ % 4096))
echo2=$((echo1 + 1))
tcp_sent=3000
tcp_reply=500

ip netns add "$netns"
ip netns exec "$netns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip link add "$veth_host" type veth peer name "$veth_peer"
sysctl -qw "net.ipv6.conf.$veth_host.disable_ipv6=1"
ip link set "$veth_peer" netns "$netns"
ip netns exec "$netns" sysctl -qw "net.ipv6.conf.$veth_peer.disable_ipv6=1"
ip addr add "$host_ip/30" dev "$veth_host"
ip link set "$veth_host" up
ip -n "$netns" addr add "$ns_ip/30" dev "$veth_peer"
ip -n "$netns" link set "$veth_peer" up
ip -n "$netns" link set lo up

mkdir "$cg"
# The TCP client: a copy of the Python interpreter under a name of its own, so that its comm
# and binary path are distinctive.
client=$tmp/vigil-obs-tcp
cp "$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')" "$client"
"$client" -c pass || fail "a copy of the Python interpreter does not run"

ip netns exec "$netns" python3 - "$ns_ip" "$tcp_port" "$tcp_reply" "$tmp/tcp.ready" <<'PY' &
import socket, sys
ip, port, reply, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port))
s.listen(8)
open(ready, "w").close()
while True:
    c, _ = s.accept()
    while c.recv(65536):
        pass
    c.sendall(b"r" * reply)
    c.close()
PY
server_pids="$server_pids $!"
ip netns exec "$netns" python3 - "$ns_ip" "$udp_port" "$tmp/udp.ready" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
open(sys.argv[3], "w").close()
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(b"pong:" + data, peer)
PY
server_pids="$server_pids $!"
for _ in $(seq 1 100); do
  [ -e "$tmp/tcp.ready" ] && [ -e "$tmp/udp.ready" ] && break
  sleep 0.05
done
[ -e "$tmp/tcp.ready" ] && [ -e "$tmp/udp.ready" ] || fail "the servers in $netns did not start"

have_nft=
if command -v nft >/dev/null; then
  have_nft=1
  ip netns exec "$netns" nft -f - <<NFT
table inet vigil_obs_e2e {
  chain in {
    type filter hook input priority 0; policy accept;
    udp dport $nft_port drop
  }
}
NFT
else
  echo "note: nft is not installed (Debian: nftables); the NETFILTER_DROP checks are skipped"
fi

# --- The agent, on this veth only, with a 1 s idle timeout so that UDP and ICMP flows end soon.
"$AGENT" --api "unix://$sock" --policy-dir "$tmp/policies" --pin-dir "$pins" --node-name "$node" \
  --flow-interfaces "$veth_host" --flow-idle-timeout 1 >"$tmp/agent.log" 2>&1 &
agent_pid=$!
wait_for_agent
python3 - "$tmp/status.json" "$veth_host" <<'PY' || fail "flow tracking is not running on $veth_host"
import json, sys
flows = json.load(open(sys.argv[1]))["flows"]
assert flows["state"] == "tracking", flows["state"]
assert [i["name"] for i in flows["interfaces"]] == [sys.argv[2]], flows["interfaces"]
PY
flow_prog_ids=$(python3 -c 'import json, sys
print(" ".join(str(p["id"]) for p in json.load(open(sys.argv[1]))["programs"]))' "$tmp/status.json")

# XDP: a drop rule and an audit rule on the host end, applied through the API.
cat >"$tmp/xdp.yaml" <<YAML
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata: {name: obs-e2e-xdp}
spec:
  xdp:
    interfaces: [$veth_host]
    rules:
      - name: drop-udp
        match: {protocol: udp, destinationPorts: [$xdrop_port]}
      - name: audit-udp
        mode: audit
        match: {protocol: udp, destinationPorts: [$xaudit_port]}
YAML
vigil policy apply -f "$tmp/xdp.yaml" >/dev/null || fail "vigil policy apply of the XDP policy failed"
for _ in $(seq 1 50); do
  vigil status --no-color | grep -q "XDP filter: enforcing" && break
  sleep 0.1
done
vigil status --no-color | grep -q "XDP filter: enforcing" || fail "the XDP policy was not put in force"

# --- Phase 1 traffic. TCP first (the oldest flow of this test, for --first).
# The client connects only once the agent has shown its exec, and exits only once the flow has
# ended: the agent looks up a flow's binary and exec id in its process table when it decodes the
# flow record, and flow records and process records come through different ring buffers, so a
# connect right after exec can get the forking shell's binary, and a client that exits right
# after its last packet can get none (a known agent bug; these waits keep this test
# deterministic).
(
  echo "$BASHPID" >"$cg/cgroup.procs"
  exec "$client" - "$ns_ip" "$tcp_port" "$tcp_sent" "$tcp_reply" "$tmp/client.go" <<'PY'
import os, socket, sys, time
ip, port, sent, reply = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for _ in range(400):
    if os.path.exists(sys.argv[5]):
        break
    time.sleep(0.025)
s = socket.create_connection((ip, port), timeout=5)
s.sendall(b"x" * sent)
s.shutdown(socket.SHUT_WR)
got = 0
while True:
    data = s.recv(65536)
    if not data:
        break
    got += len(data)
s.close()
for _ in range(1200):
    if os.path.exists(sys.argv[5] + ".exit"):
        break
    time.sleep(0.025)
sys.exit(0 if got == reply else f"received {got} bytes, expected {reply}")
PY
) &
client_pid=$!
for _ in $(seq 1 50); do
  vigil events --last 0 --type exec --pid "$client_pid" -o json 2>/dev/null | grep -q "\"$client\"" && break
  sleep 0.1
done
touch "$tmp/client.go"
client_cgroup_id=$(stat -c %i "$cg")

# UDP, ICMP and the nftables drop from the host; one ICMP echo with identifier $echo1.
python3 - "$ns_ip" "$udp_port" "$nft_port" "$echo1" <<'PY' || fail "host-side UDP/ICMP traffic failed"
import socket, struct, sys
ip, udp_port, nft_port, echo_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.sendto(b"ping", (ip, udp_port))
assert u.recvfrom(100)[0] == b"pong:ping"
u.sendto(b"nft", (ip, nft_port))
def checksum(b):
    b += b"\0" * (len(b) % 2)
    total = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    total = (total >> 16) + (total & 0xffff)
    return ~(total + (total >> 16)) & 0xffff
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
r.settimeout(5)
packet = struct.pack("!BBHHH", 8, 0, 0, echo_id, 1) + b"vigil-e2e"
packet = packet[:2] + struct.pack("!H", checksum(packet)) + packet[4:]
r.sendto(packet, (ip, 0))
while True:
    data, peer = r.recvfrom(200)
    if peer[0] == ip and data[20] == 0 and struct.unpack("!H", data[24:26])[0] == echo_id:
        break
PY
# From the namespace: a closed host port (NO_SOCKET), the XDP drop and the XDP audit.
ip netns exec "$netns" python3 - "$host_ip" "$closed_port" "$xdrop_port" "$xaudit_port" <<'PY' ||
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in sys.argv[2:]:
    u.sendto(b"from-ns", (sys.argv[1], int(port)))
PY
  fail "namespace-side UDP traffic failed"

# --- The checker: `vigil observe ... -o json` output against Python expressions over the flows
# in it. Names: tcp, tcp_new, tcp_end, udp (the echo server's flow), udp_end, nft_drop,
# noso_drop, xdp_drop, xdp_audit, echo1, echo2, live; has(p), none(p), every(p), count(p).
cat >"$tmp/check.py" <<'PY'
import json, os, sys
E = os.environ
path, exprs = sys.argv[1], sys.argv[2:]
events = [json.loads(line) for line in open(path) if line.strip()]
flows = [dict(e["flow"], _time=e.get("time", ""), _node=e.get("node_name", ""))
         for e in events if "flow" in e]
for f in flows:  # a drop without an IP header has no endpoints, a flow event no sent/reply
    for side in ("source", "destination"):
        f[side] = dict(dict(ip="", port=0, pid=0, binary="", comm="", cgroup_path=""), **f.get(side, {}))
HOST, NS = E["host_ip"], E["ns_ip"]
port = lambda name: int(E[name])
mine = lambda f: {f["source"]["ip"], f["destination"]["ip"]} == {HOST, NS}
typ = lambda f: f["event_type"]
dport = lambda f: f["destination"]["port"]
tcp = lambda f: mine(f) and f["protocol"] == "tcp" and dport(f) == port("tcp_port")
tcp_new = lambda f: tcp(f) and typ(f) == "FLOW_NEW"
tcp_end = lambda f: tcp(f) and typ(f) == "FLOW_END"
udp = lambda f: (mine(f) and f["protocol"] == "udp" and dport(f) == port("udp_port")
                 and typ(f) != "FLOW_DROP")
udp_end = lambda f: udp(f) and typ(f) == "FLOW_END"
drop = lambda f, reason, p: (mine(f) and typ(f) == "FLOW_DROP" and f["drop_reason"] == reason
                             and f["protocol"] == "udp" and dport(f) == port(p))
nft_drop = lambda f: drop(f, "NETFILTER_DROP", "nft_port")
noso_drop = lambda f: drop(f, "NO_SOCKET", "closed_port")
xdp_drop = lambda f: drop(f, "VIGIL_XDP_POLICY", "xdrop_port") and f["verdict"] == "DROPPED"
xdp_audit = lambda f: drop(f, "VIGIL_XDP_POLICY", "xaudit_port") and f["verdict"] == "AUDIT"
echo = lambda f, ident: (mine(f) and f["protocol"] == "icmp" and typ(f) != "FLOW_DROP"
                         and f["icmp_type"] == 8 and f["source"]["port"] == int(ident))
echo1 = lambda f: echo(f, E["echo1"])
echo2 = lambda f: echo(f, E["echo2"])
live = lambda f: mine(f) and f["protocol"] == "udp" and dport(f) == port("live_port")
has = lambda p: any(p(f) for f in flows)
none = lambda p: not has(p)
every = lambda p: all(p(f) for f in flows)
count = lambda p: sum(1 for f in flows if p(f))
first = lambda p: next(f for f in flows if p(f))
def ns(text):  # RFC 3339 (any number of fraction digits) -> ns since the epoch
    import calendar, re
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", text)
    y, mo, d, h, mi, s, frac = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s)))
    return secs * 10**9 + int((frac or "0").ljust(9, "0"))
t = lambda f: ns(f["_time"])
for expr in exprs:
    try:
        ok = eval(expr)
    except Exception as e:
        ok, why = False, f"{type(e).__name__}: {e}"
    else:
        why = "false"
    if not ok:
        print(f"check failed ({why}): {expr}", file=sys.stderr)
        print(f"{len(flows)} flow events; those of this test's addresses:", file=sys.stderr)
        for f in [f for f in flows if mine(f) or not f["source"]["ip"]][:40]:
            print(f"  {f['_time']} {typ(f)} {f['verdict']} {f['protocol']} "
                  f"{f['source']['ip']}:{f['source']['port']} -> "
                  f"{f['destination']['ip']}:{f['destination']['port']} "
                  f"if={f['interface']} {f['drop_reason']} flags={f['tcp_flags']}"
                  f"/{f['reply_tcp_flags']} src={f['source']['comm']}({f['source']['pid']})"
                  f"{f['source']['binary']}", file=sys.stderr)
        sys.exit(1)
PY
export host_ip ns_ip tcp_port udp_port nft_port closed_port xdrop_port xaudit_port live_port
export echo1 echo2

# expect NAME EXPR... : checks $tmp/q/NAME.json.
expect() {
  local name=$1
  shift
  python3 "$tmp/check.py" "$tmp/q/$name.json" "$@" || fail "vigil observe $(cat "$tmp/q/$name.args")"
}
# q NAME ARGS... : vigil observe ARGS -o json into $tmp/q/NAME.json.
q() {
  local name=$1
  shift
  echo "$*" >"$tmp/q/$name.args"
  vigil observe "$@" -o json >"$tmp/q/$name.json" 2>"$tmp/q/$name.err" ||
    fail "vigil observe $* exited $?: $(cat "$tmp/q/$name.err")"
}
# wait_for NAME EXPR ARGS... : polls `vigil observe --last 0 ARGS` for up to 10 s until EXPR.
wait_for() {
  local name=$1 expr=$2
  shift 2
  for _ in $(seq 1 50); do
    q "$name" --last 0 "$@"
    python3 "$tmp/check.py" "$tmp/q/$name.json" "$expr" 2>/dev/null && return 0
    sleep 0.2
  done
  expect "$name" "$expr"
}
# The kernel flow table is empty once every flow has ended (nothing else crosses this veth).
wait_table_empty() {
  local entries=
  for _ in $(seq 1 50); do
    entries=$(vigil status -o json | python3 -c 'import json, sys
print(json.load(sys.stdin)["flows"]["table_entries"])')
    [ "$entries" = 0 ] && return 0
    sleep 0.2
  done
  fail "the kernel flow table still has $entries entries 10 s after the traffic"
}

all_of_phase1='has(tcp_end) and has(udp_end) and has(echo1) and has(noso_drop) and has(xdp_drop) and has(xdp_audit)'
[ -n "$have_nft" ] && all_of_phase1="$all_of_phase1 and has(nft_drop)"
wait_for phase1 "$all_of_phase1 and has(lambda f: echo1(f) and typ(f) == 'FLOW_END')" --ip "$net.0/30"
touch "$tmp/client.go.exit"
wait "$client_pid" || fail "the TCP client failed"
wait_table_empty

# --- Phase 2: one more ICMP echo after a time mark, for --since and --until.
t_mid=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
sleep 0.05
python3 - "$ns_ip" "$echo2" <<'PY' || fail "the second ICMP echo failed"
import socket, struct, sys
ip, echo_id = sys.argv[1], int(sys.argv[2])
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
r.settimeout(5)
packet = struct.pack("!BBHHH", 8, 0, 0, echo_id, 1) + b"vigil-e2e"
padded = packet + b"\0" * (len(packet) % 2)
total = sum(struct.unpack("!%dH" % (len(padded) // 2), padded))
total = (total >> 16) + (total & 0xffff)
packet = packet[:2] + struct.pack("!H", ~(total + (total >> 16)) & 0xffff) + packet[4:]
r.sendto(packet, (ip, 0))
r.recvfrom(200)
PY
wait_for phase2 "has(lambda f: echo2(f) and typ(f) == 'FLOW_END')" --ip "$net.0/30"
wait_table_empty
echo "traffic: TCP, UDP, ICMP, NO_SOCKET${have_nft:+, NETFILTER_DROP}, XDP drop and audit all seen"

# --- The recorded flows, field by field (-o json).
q all --last 0 --ip "$net.0/30"
expect all \
  "every(lambda f: f['_node'] == '$node')" \
  "count(tcp_new) == 1 and count(tcp_end) == 1" \
  "first(tcp_end)['end_reason'] == 'fin' and first(tcp_end)['verdict'] == 'FORWARDED'" \
  "first(tcp_end)['source']['ip'] == HOST and first(tcp_end)['destination']['ip'] == NS" \
  "first(tcp_end)['interface'] == '$veth_host' and first(tcp_end)['direction'] == 'egress'" \
  "first(tcp_end)['sent']['payload_bytes'] == '$tcp_sent'" \
  "first(tcp_end)['reply']['payload_bytes'] == '$tcp_reply'" \
  "int(first(tcp_end)['sent']['bytes']) > $tcp_sent and int(first(tcp_end)['sent']['packets']) >= 4" \
  "set(first(tcp_end)['tcp_flags']) >= {'SYN', 'ACK', 'FIN'} and set(first(tcp_end)['reply_tcp_flags']) >= {'SYN', 'ACK', 'FIN'}" \
  "first(tcp_end)['source']['pid'] == $client_pid" \
  "first(tcp_end)['source']['comm'] == 'vigil-obs-tcp'" \
  "first(tcp_end)['source']['binary'] == '$client'" \
  "first(tcp_end)['source']['cgroup_path'] == '$cg_rel'" \
  "first(tcp_end)['source']['cgroup_id'] == '$client_cgroup_id'" \
  "first(tcp_end)['source']['exec_id'].startswith('$node:')" \
  "'SYN' in first(tcp_new)['tcp_flags']" \
  "first(udp_end)['end_reason'] == 'idle' and first(udp_end)['sent']['payload_bytes'] == '4'" \
  "first(udp_end)['reply']['payload_bytes'] == '9'" \
  "first(lambda f: echo1(f) and typ(f) == 'FLOW_END')['sent']['payload_bytes'] == '9'" \
  "first(lambda f: echo1(f) and typ(f) == 'FLOW_END')['reply']['packets'] == '1'" \
  "first(noso_drop)['interface'] == '$veth_host' and first(noso_drop)['verdict'] == 'DROPPED'" \
  "first(noso_drop)['source']['ip'] == NS" \
  "first(xdp_drop)['policy'] == 'obs-e2e-xdp' and first(xdp_drop)['rule'] == 'drop-udp'" \
  "first(xdp_drop)['interface'] == '$veth_host' and first(xdp_drop)['length'] > 0" \
  "first(xdp_audit)['policy'] == 'obs-e2e-xdp' and first(xdp_audit)['rule'] == 'audit-udp'" \
  "none(lambda f: typ(f) == 'FLOW_DROP' and dport(f) == $xdrop_port and f['verdict'] != 'DROPPED' and f['drop_reason'] == 'VIGIL_XDP_POLICY')"
if [ -n "$have_nft" ]; then
  expect all "first(nft_drop)['verdict'] == 'DROPPED'" \
    "first(nft_drop)['interface'].startswith('netns:')" \
    "first(nft_drop)['source']['ip'] == HOST"
fi
echo "json: TCP end (fin, $tcp_sent/$tcp_reply payload bytes, pid, comm, binary, cgroup), UDP, ICMP, drops checked"

# --- Filters. Each must keep what it should and leave out what it should.
# --protocol, --not --protocol, repeated --protocol (OR)
q proto_udp --last 0 --protocol udp
expect proto_udp "has(udp) and has(noso_drop) and has(xdp_drop)" "none(tcp) and none(echo1)" \
  "every(lambda f: f['protocol'] == 'udp')"
q not_udp --last 0 --ip "$net.0/30" --not --protocol udp
expect not_udp "has(tcp_end) and has(echo1)" "none(udp) and none(noso_drop) and none(xdp_audit)" \
  "every(lambda f: f['protocol'] != 'udp')"
q proto_or --last 0 --protocol tcp --protocol ICMP
expect proto_or "has(tcp_end) and has(echo1)" "none(udp)" \
  "every(lambda f: f['protocol'] in ('tcp', 'icmp', 'icmpv6'))"
# --port: two values OR'ed; with --protocol AND'ed; --from-port / --to-port direction
q port_or --last 0 --port "$tcp_port" --port "$udp_port"
expect port_or "has(tcp_end) and has(udp_end)" "none(echo1) and none(noso_drop) and none(xdp_drop)" \
  "every(lambda f: {f['source']['port'], dport(f)} & {$tcp_port, $udp_port})"
q port_and --last 0 --port "$udp_port" --protocol tcp
expect port_and "none(udp) and none(tcp)" "len(flows) == 0 or every(lambda f: not mine(f))"
q port_and2 --last 0 --port "$tcp_port" --protocol tcp
expect port_and2 "has(tcp_new) and has(tcp_end)" "none(udp)"
q to_port --last 0 --to-port "$tcp_port"
expect to_port "has(tcp_end)" "every(lambda f: dport(f) == $tcp_port)"
q from_port_srv --last 0 --from-port "$tcp_port"
expect from_port_srv "none(tcp)"
client_port=$(python3 -c 'import json, sys
for l in open(sys.argv[1]):
    f = json.loads(l).get("flow", {})
    if f.get("event_type") == "FLOW_END" and f["destination"]["port"] == int(sys.argv[2]):
        print(f["source"]["port"]); break' "$tmp/q/all.json" "$tcp_port")
q from_port --last 0 --from-port "$client_port"
expect from_port "has(tcp_end)" "every(lambda f: f['source']['port'] == $client_port)" "none(udp)"
# --ip, --from-ip, --to-ip: direction and CIDRs
q from_host --last 0 --from-ip "$host_ip"
expect from_host "has(tcp_end) and has(udp_end) and has(echo1)" \
  "none(noso_drop) and none(xdp_drop) and none(xdp_audit)" \
  "every(lambda f: f['source']['ip'] == HOST)"
q to_host --last 0 --to-ip "$host_ip"
expect to_host "has(noso_drop) and has(xdp_drop) and has(xdp_audit)" \
  "none(tcp_end) and none(udp_end) and none(echo1)" "every(lambda f: f['destination']['ip'] == HOST)"
q from_ns_cidr --last 0 --from-ip "$net.2/31"
expect from_ns_cidr "has(noso_drop) and has(xdp_drop)" "none(tcp) and none(udp)" \
  "every(lambda f: f['source']['ip'] in ('$net.2', '$net.3'))"
q ip_cidr --last 0 --ip "$net.0/24"
expect ip_cidr "has(tcp_end) and has(udp_end) and has(noso_drop) and has(xdp_audit) and has(echo2)" \
  "every(lambda f: f['source']['ip'].startswith('$net.') or f['destination']['ip'].startswith('$net.'))"
q ip_other --last 0 --ip 192.0.2.0/24
expect ip_other "none(mine)"
q ip_v6 --last 0 --ip ::/0
expect ip_v6 "none(mine)" "every(lambda f: ':' in f['source']['ip'] or ':' in f['destination']['ip'])"
q ip_not --last 0 --port "$udp_port" --not --ip "$ns_ip"
expect ip_not "none(mine)"
# --not negates only the next flag: port 18080 is excluded, port 15353 included
q not_scope --last 0 --not --port "$tcp_port" --port "$udp_port"
expect not_scope "has(udp_end)" "none(tcp)" "every(lambda f: $udp_port in (f['source']['port'], dport(f)))"
# --verdict
q dropped --last 0 --verdict DROPPED --ip "$net.0/30"
expect dropped "has(noso_drop) and has(xdp_drop)" "none(xdp_audit) and none(tcp_end) and none(udp)" \
  "every(lambda f: f['verdict'] == 'DROPPED')"
[ -z "$have_nft" ] || expect dropped "has(nft_drop)"
q forwarded --last 0 --verdict forwarded --ip "$net.0/30"
expect forwarded "has(tcp_end) and has(udp_end) and has(echo1)" \
  "none(noso_drop) and none(xdp_drop) and none(xdp_audit)" "every(lambda f: f['verdict'] == 'FORWARDED')"
q audit --last 0 --verdict Audit
expect audit "count(xdp_audit) == 1" "none(xdp_drop) and none(tcp) and none(noso_drop)" \
  "every(lambda f: f['verdict'] == 'AUDIT')"
q verdict_or --last 0 --verdict AUDIT --verdict DROPPED --ip "$net.0/30"
expect verdict_or "has(xdp_audit) and has(xdp_drop)" "none(tcp_end)"
# --type
q type_drop --last 0 --type drop --ip "$net.0/30"
expect type_drop "has(noso_drop) and has(xdp_drop) and has(xdp_audit)" "none(tcp_end) and none(udp)" \
  "every(lambda f: typ(f) == 'FLOW_DROP')"
q type_flow --last 0 --type flow --ip "$net.0/30"
expect type_flow "has(tcp_new) and has(tcp_end) and has(udp_end) and has(echo1)" \
  "none(noso_drop) and none(xdp_drop) and none(xdp_audit)" "every(lambda f: typ(f) != 'FLOW_DROP')"
# --tcp-flags: every listed flag must have been seen
q flags_syn_fin --last 0 --tcp-flags SYN,FIN
expect flags_syn_fin "has(tcp_end)" "none(udp) and none(echo1)" \
  "every(lambda f: {'SYN', 'FIN'} <= set(f['tcp_flags']) | set(f['reply_tcp_flags']))"
q flags_syn --last 0 --tcp-flags syn --ip "$net.0/30"
expect flags_syn "has(tcp_new) and has(tcp_end)" "none(udp) and none(echo1)"
q flags_rst --last 0 --tcp-flags SYN,RST --ip "$net.0/30"
expect flags_rst "none(tcp)"
q flags_or --last 0 --tcp-flags SYN,RST --tcp-flags FIN --ip "$net.0/30"
expect flags_or "has(tcp_end)" "none(udp)"
# --pid, --binary, --cgroup of the TCP client
q pid --last 0 --pid "$client_pid"
expect pid "has(tcp_end)" "none(udp) and none(echo1) and none(xdp_drop)" \
  "every(lambda f: $client_pid in (f['source']['pid'], f['destination']['pid']))"
q binary --last 0 --binary "$client"
expect binary "has(tcp_end)" "none(udp) and none(noso_drop)" \
  "every(lambda f: '$client' in (f['source']['binary'], f['destination']['binary']))"
q binary_prefix --last 0 --binary "$tmp/vigil-obs-*"
expect binary_prefix "has(tcp_end)" "none(udp)"
q binary_dir --last 0 --binary "$tmp/"
expect binary_dir "has(tcp_end)" "none(udp)"
q binary_other --last 0 --binary "$tmp/vigil-obs-other" --ip "$net.0/30"
expect binary_other "none(tcp) and none(udp)"
q cgroup --last 0 --cgroup "$cg_rel"
expect cgroup "has(tcp_end)" "none(udp) and none(echo1) and none(xdp_audit)" \
  "every(lambda f: '$cg_rel' in (f['source']['cgroup_path'], f['destination']['cgroup_path']))"
q cgroup_id --last 0 --cgroup "$client_cgroup_id"
expect cgroup_id "has(tcp_end)" "none(udp)"
q not_cgroup --last 0 --ip "$net.0/30" --not --cgroup "$cg_rel"
expect not_cgroup "has(udp_end) and has(echo1)" "none(tcp_end)"
# --interface: the host end's flows and drops, not the drop inside the namespace
q iface --last 0 --interface "$veth_host"
expect iface "has(tcp_end) and has(udp_end) and has(noso_drop) and has(xdp_drop) and has(xdp_audit)" \
  "every(lambda f: f['interface'] == '$veth_host')"
[ -z "$have_nft" ] || expect iface "none(nft_drop)"
q iface_other --last 0 --interface "${veth_host}x"
expect iface_other "len(flows) == 0"
echo "filters: --ip --from-ip --to-ip (CIDR, IPv6), --port --from-port --to-port, --protocol,"
echo "  --verdict, --type, --tcp-flags, --pid, --binary, --cgroup, --interface, --not: checked"

# --- Time: --since/--until around the mark, relative --since, --last N, --first N.
q since --since "$t_mid" --ip "$net.0/30"
expect since "has(echo2)" "none(tcp) and none(udp) and none(echo1) and none(xdp_drop)" \
  "every(lambda f: t(f) >= ns('$t_mid'))"
q until --last 0 --until "$t_mid" --ip "$net.0/30"
expect until "has(tcp_end) and has(udp_end) and has(echo1) and has(xdp_drop)" "none(echo2)" \
  "every(lambda f: t(f) < ns('$t_mid'))"
q window --since 10m --until "$t_mid" --ip "$net.0/30"
expect window "has(tcp_new) and has(echo1)" "none(echo2)"
q since_rel --since 10m --ip "$net.0/30"
expect since_rel "has(tcp_new) and has(echo2)"
q last1 --last 1 --ip "$net.0/30"
expect last1 "len(flows) == 1 and echo2(flows[0]) and typ(flows[0]) == 'FLOW_END'"
q last3 --last 3 --ip "$net.0/30"
expect last3 "len(flows) == 3" "echo2(flows[2])" "t(flows[0]) <= t(flows[1]) <= t(flows[2])"
q first1 --first 1 --ip "$net.0/30"
expect first1 "len(flows) == 1 and tcp_new(flows[0])"
q first2 --first 2 --protocol udp --ip "$net.0/30"
expect first2 "len(flows) == 2" "every(lambda f: f['protocol'] == 'udp')" "none(tcp)" \
  "t(flows[0]) <= t(flows[1])"
q default --ip "$net.0/30"
expect default "1 <= len(flows) <= 20" "has(echo2)"
echo "time: --since (RFC 3339 and 10m), --until, --last, --first, default last 20: checked"

# --- Output formats other than json.
vigil observe --last 0 --ip "$net.0/30" >"$tmp/compact.txt"
vigil observe --last 0 --ip "$net.0/30" -o compact --no-color >"$tmp/compact2.txt"
cmp -s "$tmp/compact.txt" "$tmp/compact2.txt" || fail "-o compact differs from the default output"
grep -Eq "^[0-9T:.-]+Z $host_ip:$client_port vigil-obs-tcp\($client_pid\) -> $ns_ip:$tcp_port .*tcp SYN,ACK,(PSH,)?FIN FORWARDED end \(fin\)  sent [0-9]+ pkts [0-9]+ bytes $tcp_sent payload, reply [0-9]+ pkts [0-9]+ bytes $tcp_reply payload$" "$tmp/compact.txt" ||
  fail "compact output lacks the TCP flow's end line: $(cat "$tmp/compact.txt")"
grep -Eq " $ns_ip:[0-9]+ -x> $host_ip:$xdrop_port udp DROPPED VIGIL_XDP_POLICY policy=obs-e2e-xdp rule=drop-udp on $veth_host$" "$tmp/compact.txt" ||
  fail "compact output lacks the XDP drop line"
grep -Eq " -x> $host_ip:$xaudit_port udp AUDIT VIGIL_XDP_POLICY policy=obs-e2e-xdp rule=audit-udp on $veth_host$" "$tmp/compact.txt" ||
  fail "compact output lacks the XDP audit line"
grep -Eq " -x> $host_ip:$closed_port udp DROPPED NO_SOCKET on $veth_host$" "$tmp/compact.txt" ||
  fail "compact output lacks the NO_SOCKET drop line"
grep -Eq "^[0-9T:.-]+Z $host_ip -> $ns_ip icmp type=8 code=0 FORWARDED new$" "$tmp/compact.txt" ||
  fail "compact output lacks the ICMP echo line"
if grep -q $'\x1b' "$tmp/compact.txt"; then fail "colour escapes in output to a file"; fi

vigil observe --last 0 --ip "$net.0/30" -o table >"$tmp/table.txt"
head -n 1 "$tmp/table.txt" | grep -Eq '^TIME +SOURCE +DESTINATION +PROTO +FLAGS +VERDICT +SUMMARY$' ||
  fail "-o table header is wrong: $(head -n 1 "$tmp/table.txt")"
[ "$(wc -l <"$tmp/table.txt")" = "$(($(wc -l <"$tmp/q/all.json") + 1))" ] ||
  fail "-o table has $(wc -l <"$tmp/table.txt") lines for $(wc -l <"$tmp/q/all.json") flows"
grep -Eq "vigil-obs-tcp\($client_pid\) +$ns_ip:$tcp_port .* +tcp +SYN,ACK,(PSH,)?FIN +FORWARDED +end \(fin\)" "$tmp/table.txt" ||
  fail "-o table lacks the TCP end row"
grep -Eq "$host_ip:$xaudit_port +udp +AUDIT +VIGIL_XDP_POLICY policy=obs-e2e-xdp rule=audit-udp" "$tmp/table.txt" ||
  fail "-o table lacks the XDP audit row"

vigil observe --last 0 --ip "$net.0/30" --port "$tcp_port" --type flow -o dict >"$tmp/dict.txt"
python3 - "$tmp/dict.txt" "$client_pid" "$client" "$cg_rel" "$veth_host" "$tcp_sent" "$tcp_reply" <<'PY' ||
import re, sys
path, pid, client, cg, veth, sent, reply = sys.argv[1:]
blocks = open(path).read().split("-" * 40 + "\n")
assert len(blocks) == 2, f"{len(blocks)} dict blocks, expected 2 (new and end)"
for block in blocks:
    fields = dict(re.match(r"^ *([A-Z ]+): (.*)$", l).groups() for l in block.splitlines())
    assert fields["PROTOCOL"] == "tcp" and fields["VERDICT"] == "FORWARDED", fields
    assert fields["INTERFACE"] == f"{veth} (egress)", fields
    assert "TIMESTAMP" in fields and "FIRST SEEN" in fields and "LAST SEEN" in fields, fields
end = dict(re.match(r"^ *([A-Z ]+): (.*)$", l).groups() for l in blocks[1].splitlines())
assert end["EVENT"] == "end (fin)", end
assert end["SOURCE PROCESS"] == f"vigil-obs-tcp({pid}) {client} uid=0 cgroup={cg}", end
assert end["SOURCE"].startswith("10.") and end["TCP FLAGS"].startswith("SYN,ACK"), end
assert end["SENT"].endswith(f" bytes {sent} payload"), end
assert end["REPLY"].endswith(f" bytes {reply} payload"), end
PY
  fail "-o dict of the TCP flow is wrong: $(cat "$tmp/dict.txt")"
vigil observe --last 0 --verdict AUDIT --ip "$net.0/30" -o dict >"$tmp/dict-audit.txt"
grep -Eq '^ +DROP REASON: VIGIL_XDP_POLICY$' "$tmp/dict-audit.txt" &&
  grep -Eq '^ +POLICY: obs-e2e-xdp rule audit-udp$' "$tmp/dict-audit.txt" &&
  grep -Eq '^ +VERDICT: AUDIT$' "$tmp/dict-audit.txt" ||
  fail "-o dict of the XDP audit is wrong: $(cat "$tmp/dict-audit.txt")"

# --print-node-name in compact, table and dict
vigil observe --last 1 --ip "$net.0/30" --print-node-name >"$tmp/node.txt"
grep -Eq "^[0-9T:.-]+Z \[$node\] $host_ip -> $ns_ip icmp" "$tmp/node.txt" ||
  fail "--print-node-name: compact line lacks [$node]: $(cat "$tmp/node.txt")"
vigil observe --last 1 --ip "$net.0/30" --print-node-name -o table >"$tmp/node-table.txt"
head -n 1 "$tmp/node-table.txt" | grep -Eq '^TIME +NODE +SOURCE ' &&
  sed -n 2p "$tmp/node-table.txt" | grep -Eq "^[0-9T:.-]+Z +$node +$host_ip " ||
  fail "--print-node-name: table lacks the NODE column: $(cat "$tmp/node-table.txt")"
vigil observe --last 1 --ip "$net.0/30" --print-node-name -o dict | grep -Eq "^ +NODE: $node$" ||
  fail "--print-node-name: dict lacks NODE"
if vigil observe --last 1 --ip "$net.0/30" | grep -q "\[$node\]"; then
  fail "the node name is printed without --print-node-name"
fi

# Colour: only on a terminal, never with --no-color or NO_COLOR.
cat >"$tmp/on_tty.py" <<'PY'
import os, pty, sys
out = b""
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
PY
tty_observe() { python3 "$tmp/on_tty.py" "$VIGIL" --server "unix://$sock" observe --last 0 --ip "$net.0/30" "$@"; }
tty_observe >"$tmp/tty.txt" || fail "vigil observe on a terminal failed"
grep -q $'\x1b\[32mFORWARDED\x1b\[0m' "$tmp/tty.txt" &&
  grep -q $'\x1b\[1;31mDROPPED\x1b\[0m' "$tmp/tty.txt" &&
  grep -q $'\x1b\[33mAUDIT\x1b\[0m' "$tmp/tty.txt" ||
  fail "no coloured verdicts on a terminal"
tty_observe --no-color >"$tmp/tty-nocolor.txt" || fail "vigil observe --no-color on a terminal failed"
if grep -q $'\x1b' "$tmp/tty-nocolor.txt"; then fail "--no-color output has colour escapes"; fi
grep -q "AUDIT VIGIL_XDP_POLICY" "$tmp/tty-nocolor.txt" || fail "--no-color output lacks the audit line"
NO_COLOR=1 tty_observe >"$tmp/tty-nocolor2.txt" || fail "NO_COLOR=1 vigil observe failed"
if grep -q $'\x1b' "$tmp/tty-nocolor2.txt"; then fail "NO_COLOR output has colour escapes"; fi
NO_COLOR=1 tty_observe -o table >"$tmp/tty-nocolor3.txt" || fail "NO_COLOR=1 vigil observe -o table failed"
if grep -q $'\x1b' "$tmp/tty-nocolor3.txt"; then fail "NO_COLOR table output has colour escapes"; fi
echo "output: compact (default), table, dict, json, --print-node-name, colour, --no-color, NO_COLOR: checked"

# --- Follow: only new flows, live. The agent does not count flow followers as clients, so probe
# with fresh UDP flows until the follower shows one.
timeout 30 "$VIGIL" --server "unix://$sock" observe -f --protocol udp --ip "$net.0/30" -o json \
  >"$tmp/follow.json" 2>"$tmp/follow.err" &
follow_pid=$!
seen=
for _ in $(seq 1 50); do
  python3 -c 'import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"live", (sys.argv[1], int(sys.argv[2])))' \
    "$ns_ip" "$live_port"
  sleep 0.1
  if grep -q "\"port\":$live_port" "$tmp/follow.json"; then seen=1; break; fi
  kill -0 "$follow_pid" 2>/dev/null || fail "vigil observe -f exited: $(cat "$tmp/follow.err")"
done
[ -n "$seen" ] || fail "vigil observe -f never showed a live flow to port $live_port"
kill "$follow_pid" 2>/dev/null || true
wait "$follow_pid" 2>/dev/null || true
follow_pid=
python3 "$tmp/check.py" "$tmp/follow.json" "has(lambda f: live(f) and typ(f) == 'FLOW_NEW')" \
  "every(live)" "none(udp) and none(noso_drop) and none(xdp_drop)" ||
  fail "vigil observe -f: wrong flows (history replayed, or the filter not applied)"
# -f --last N: history first, then live
timeout 30 "$VIGIL" --server "unix://$sock" observe -f --last 2 --ip "$net.0/30" --to-port "$udp_port" \
  -o json >"$tmp/follow2.json" 2>"$tmp/follow2.err" &
follow_pid=$!
for _ in $(seq 1 50); do
  [ "$(wc -l <"$tmp/follow2.json")" -ge 2 ] && break
  sleep 0.1
done
[ "$(wc -l <"$tmp/follow2.json")" -ge 2 ] || fail "vigil observe -f --last 2 did not print the history"
seen=
for _ in $(seq 1 50); do
  python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(b"again", (sys.argv[1], int(sys.argv[2]))); s.recvfrom(100)' "$ns_ip" "$udp_port"
  sleep 0.1
  if [ "$(grep -c FLOW_NEW "$tmp/follow2.json")" -ge 2 ]; then seen=1; break; fi
  kill -0 "$follow_pid" 2>/dev/null || fail "vigil observe -f --last 2 exited: $(cat "$tmp/follow2.err")"
done
[ -n "$seen" ] || fail "vigil observe -f --last 2 never showed a live flow after the history"
kill "$follow_pid" 2>/dev/null || true
wait "$follow_pid" 2>/dev/null || true
follow_pid=
python3 "$tmp/check.py" "$tmp/follow2.json" "every(udp)" "count(lambda f: udp(f) and typ(f) == 'FLOW_NEW') >= 2" \
  "typ(flows[0]) == 'FLOW_NEW' and typ(flows[1]) == 'FLOW_END'" ||
  fail "vigil observe -f --last 2: expected the old UDP flow's new and end events, then live ones"
echo "follow: -f shows only new flows, live; -f --last 2 starts with history: checked"

# --- Bad input: exit 2 and a message naming the problem, before any call.
bad() {
  local want=$1 rc=0
  shift
  vigil observe "$@" >"$tmp/bad.out" 2>"$tmp/bad.err" || rc=$?
  [ "$rc" = 2 ] || fail "vigil observe $* exited $rc, expected 2"
  grep -q -- "$want" "$tmp/bad.err" || fail "vigil observe $*: message lacks '$want': $(cat "$tmp/bad.err")"
  [ ! -s "$tmp/bad.out" ] || fail "vigil observe $* printed to stdout: $(cat "$tmp/bad.out")"
}
bad "--ip: .* invalid prefix length" --ip 10.0.0.0/33
bad "--from-ip: .*not-an-ip" --from-ip not-an-ip
bad "--to-ip: .* host bits set" --to-ip 10.0.0.1/8
bad "a port from 1 to 65535" --port 0
bad "a port from 1 to 65535" --to-port 65536
bad "tcp, udp or icmp" --protocol sctp
bad "FORWARDED, DROPPED or AUDIT" --verdict accepted
bad "flow (new, update and end events) or drop" --type exec
bad "TCP flags separated by commas" --tcp-flags SYN,BOGUS
bad "--pid: expected a process id" --pid 0
bad "absolute path" --binary curl
bad "cgroup path prefix" --cgroup system.slice
bad "cannot be combined with --follow" --first 5 -f
bad "cannot be combined with --follow" --until 1m -f
bad "cannot be combined with --last" --first 5 --last 5
bad "must be before --until" --since 1m --until 2m
bad "--since: expected a duration" --since yesterday
bad "given twice in a row" --not --not --ip 10.0.0.1
bad "must come right before a filter flag" --not -f
bad "--output: yaml not in" -o yaml
rc=0
vigil traffic --cgroup system.slice >/dev/null 2>"$tmp/bad.err" || rc=$?
[ "$rc" = 2 ] && grep -q "cgroup path prefix" "$tmp/bad.err" ||
  fail "vigil traffic --cgroup system.slice exited $rc: $(cat "$tmp/bad.err")"
echo "bad input: 21 cases exit 2 with a message"

# --- vigil traffic: the client's cgroup, with exactly the payload bytes it sent and received.
vigil traffic --cgroup "$cg_rel" -o json >"$tmp/traffic.json"
python3 - "$tmp/traffic.json" "$cg_rel" "$tcp_sent" "$tcp_reply" "$client_cgroup_id" <<'PY' ||
import json, sys
path, cg, sent, reply, cg_id = sys.argv[1:]
t = json.load(open(path))
assert t["source"].startswith("cgroup_skb on "), t["source"]
rows = t["rows"]
assert rows and all(r["cgroup_path"] == cg for r in rows), rows
assert {r["protocol"] for r in rows} == {"tcp"}, rows
tcp = rows[0]
assert tcp["cgroup_id"] == cg_id, tcp
assert tcp["egress"]["payload_bytes"] == sent, tcp
assert tcp["ingress"]["payload_bytes"] == reply, tcp
assert int(tcp["egress"]["packets"]) >= 4 and int(tcp["ingress"]["packets"]) >= 3, tcp
assert int(tcp["egress"]["bytes"]) > int(sent) and int(tcp["ingress"]["bytes"]) > int(reply), tcp
PY
  fail "vigil traffic --cgroup $cg_rel: $(cat "$tmp/traffic.json")"
vigil traffic --cgroup "$cg_rel" >"$tmp/traffic.txt"
grep -Eq "^$cg_rel +tcp +[0-9]+ +[0-9]+ +$tcp_reply +[0-9]+ +[0-9]+ +$tcp_sent$" "$tmp/traffic.txt" ||
  fail "vigil traffic table lacks the client's tcp row: $(cat "$tmp/traffic.txt")"
vigil traffic --cgroup "$cg_rel/nothing-here" >"$tmp/traffic-none.txt"
grep -q "No traffic counted." "$tmp/traffic-none.txt" || fail "vigil traffic for an unknown prefix: $(cat "$tmp/traffic-none.txt")"
echo "traffic: $cg_rel sent $tcp_sent and received $tcp_reply payload bytes over TCP"

# --- vigil status: the Flows section.
vigil status --no-color >"$tmp/status.txt"
grep -q "^Flows: tracking$" "$tmp/status.txt" || fail "vigil status has no 'Flows: tracking'"
grep -Eq "^  $veth_host +[0-9]+ +(tcx|tc)$" "$tmp/status.txt" || fail "vigil status does not list $veth_host under Flows"
grep -Eq "^  NO_SOCKET +[0-9]+$" "$tmp/status.txt" || fail "vigil status does not count NO_SOCKET drops"
if [ -n "$have_nft" ]; then
  grep -Eq "^  NETFILTER_DROP +[0-9]+$" "$tmp/status.txt" || fail "vigil status does not count NETFILTER_DROP"
fi
vigil status -o json >"$tmp/status.json"
python3 - "$tmp/status.json" <<'PY' || fail "vigil status -o json: wrong flow counters"
import json, sys
f = json.load(open(sys.argv[1]))["flows"]
assert int(f["flows_seen"]) >= 20 and int(f["ring_size"]) >= 20, f
assert int(f["flows_lost"]) == 0, f
assert int(f["table_capacity"]) == 65536, f
PY
echo "status: Flows section lists $veth_host and the drop reasons"

# --- Stop: SIGTERM, then nothing of the agent on the veth but the pinned XDP filter, which
# --cleanup removes.
kill -TERM "$agent_pid"
rc=0
wait "$agent_pid" || rc=$?
agent_pid=
[ "$rc" = 0 ] || fail "vigil-agent exited $rc on SIGTERM, expected 0"
left=
for _ in $(seq 1 50); do
  left=
  for id in $flow_prog_ids; do
    bpftool prog show id "$id" >/dev/null 2>&1 && left="$left $id"
  done
  [ -z "$left" ] && break
  sleep 0.1
done
[ -z "$left" ] || fail "BPF program ids$left are still loaded after the agent stopped"
for dir in ingress egress; do
  [ -z "$(tc filter show dev "$veth_host" "$dir" 2>/dev/null)" ] ||
    fail "tc filters left on $veth_host $dir: $(tc filter show dev "$veth_host" "$dir")"
done
bpftool net show dev "$veth_host" >"$tmp/net.txt"
python3 - "$tmp/net.txt" <<'PY' || fail "bpftool net show dev $veth_host: tc programs left: $(cat "$tmp/net.txt")"
import sys
section = None
for line in open(sys.argv[1]):
    line = line.strip()
    if line.endswith(":"):
        section = line[:-1]
    elif line and section in ("tc", "tcx"):
        sys.exit(f"left in {section}: {line}")
PY
ip link show "$veth_host" 2>/dev/null | grep -q "prog/xdp" || fail "the pinned XDP filter did not stay after SIGTERM"
"$AGENT" --cleanup --pin-dir "$pins" >/dev/null 2>&1 || fail "vigil-agent --cleanup failed"
if ip link show "$veth_host" 2>/dev/null | grep -q "prog/xdp"; then fail "--cleanup left the XDP program attached"; fi
[ -z "$(bpftool net show dev "$veth_host" | grep -v -e '^[a-z_]*:$' -e '^$')" ] ||
  fail "programs left on $veth_host after --cleanup: $(bpftool net show dev "$veth_host")"
echo "stop: no tc/tcx program left on $veth_host; XDP stayed until --cleanup"
echo "PASS"
