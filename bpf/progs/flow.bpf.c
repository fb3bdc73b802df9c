// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network flows and accounting (the vigil_flow object; contract in bpf/abi/vigil/flow.h):
 *   - vigil_flow_ingress/egress (tc, on the watched interfaces): the flow table;
 *   - vigil_cgroup_ingress/egress (cgroup_skb, on the cgroup v2 root): per-cgroup counters;
 *   - vigil_sock_send/recv/state (socket tracepoints): which process owns a socket;
 *   - vigil_kfree_skb (skb/kfree_skb): kernel drops by reason, sampled records.
 * Every program observes only: tc returns TC_ACT_UNSPEC (the next filter decides), cgroup_skb
 * allows every packet.
 */
#include "vigil_bpf/flow.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define VIGIL_TC_ACT_UNSPEC (-1)
#define VIGIL_AF_INET 2
#define VIGIL_AF_INET6 10
#define VIGIL_SOCK_RAW 3
#define VIGIL_TCP_ESTABLISHED 1
#define VIGIL_TCP_SYN_SENT 2
#define VIGIL_FLOW_WAKEUP_BYTES (64 * 1024)

/* Drop records per reason per CPU per second (the agent divides its per-reason budget). */
const volatile __u32 cfg_drop_samples_per_cpu = 50;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* sized by the agent (--flow-table-size) */
	__type(key, struct vigil_flow_key);
	__type(value, struct vigil_flow_value);
} vigil_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20); /* sized by the agent */
} vigil_flow_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_FLOW_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} vigil_flow_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* sized by the agent */
	__type(key, struct vigil_sock_key);
	__type(value, struct vigil_sock_owner);
} vigil_sock_owners SEC(".maps");

/* Per socket: which process last recorded itself as its owner, and for which ports. Makes
 * the common case (the same socket used again) one storage lookup, without even asking which
 * process this is, except every VIGIL_SOCK_RECHECK uses (a socket handed to another process
 * is attributed to it within that many sends or receives). */
#define VIGIL_SOCK_RECHECK 64

struct sock_seen {
	__u32 tgid;
	__u16 lport;
	__u16 rport;
	__u32 uses;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_seen);
} vigil_sock_seen SEC(".maps");

/* TCP sockets between connect() (process context) and the handshake's end (softirq). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock address */
	__type(value, struct vigil_sock_owner);
} vigil_sock_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 16384); /* sized by the agent (--cgroup-table-size) */
	__type(key, struct vigil_traffic_key);
	__type(value, struct vigil_cgroup_traffic);
} vigil_cgroup_traffic SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_DROP_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} vigil_drop_counts SEC(".maps");

struct drop_sample {
	__u64 window_ns;
	__u64 sampled;
	__u64 suppressed;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_DROP_REASONS);
	__type(key, __u32);
	__type(value, struct drop_sample);
} vigil_drop_sample SEC(".maps");

static __always_inline void flow__stat(enum vigil_flow_stat id)
{
	__u32 key = id;
	__u64 *v = bpf_map_lookup_elem(&vigil_flow_stats, &key);

	if (v)
		*v += 1;
}

static __always_inline __u64 flow__wakeup(void)
{
	return bpf_ringbuf_query(&vigil_flow_ring, BPF_RB_AVAIL_DATA) >= VIGIL_FLOW_WAKEUP_BYTES
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
}

/* ---- flows (tc) ------------------------------------------------------------------------ */

/* Frame [data, end) -> p. Returns 0, or -1 for a frame that is not IP (or not parseable). */
static __always_inline int flow__parse_frame(struct __sk_buff *skb, struct flow_pkt *p,
					     __u32 *l3_off)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return -1;
	__u16 proto = bpf_ntohs(eth->h_proto);
	__u32 off = sizeof(*eth);
	if (proto == VIGIL_FLOW_ETH_P_8021Q || proto == VIGIL_FLOW_ETH_P_8021AD) {
		__u16 *tag = data + off;
		if ((void *)(tag + 2) > end)
			return -1;
		proto = bpf_ntohs(tag[1]);
		off += 4;
	}
	if (proto != VIGIL_FLOW_ETH_P_IP && proto != VIGIL_FLOW_ETH_P_IPV6) {
		flow__stat(VIGIL_FLOW_STAT_NOT_IP);
		return -1;
	}
	*l3_off = off;
	if (flow__ip(data, end, off, proto, p)) {
		flow__stat(VIGIL_FLOW_STAT_MALFORMED);
		return -1;
	}
	return 0;
}

static __always_inline void flow__track(struct __sk_buff *skb, __u8 hook)
{
	struct flow_pkt p = {};
	__u32 l3_off = 0;

	if (flow__parse_frame(skb, &p, &l3_off))
		return;

	/* Canonical key: the lower (address, port) end is a. */
	__u8 dir = VIGIL_FLOW_AB;
	if (p.src[0] > p.dst[0] ||
	    (p.src[0] == p.dst[0] &&
	     (p.src[1] > p.dst[1] || (p.src[1] == p.dst[1] && p.sport > p.dport))))
		dir = VIGIL_FLOW_BA;

	struct vigil_flow_key key = {};
	if (dir == VIGIL_FLOW_AB) {
		__builtin_memcpy(key.a_addr, p.src, 16);
		__builtin_memcpy(key.b_addr, p.dst, 16);
		key.a_port = p.sport;
		key.b_port = p.dport;
	} else {
		__builtin_memcpy(key.a_addr, p.dst, 16);
		__builtin_memcpy(key.b_addr, p.src, 16);
		key.a_port = p.dport;
		key.b_port = p.sport;
	}
	key.ifindex = skb->ifindex;
	key.proto = p.proto;

	struct vigil_flow_counters c;
	flow__count(skb->len > l3_off ? skb->len - l3_off : 0, skb->gso_size, skb->gso_segs, &p,
		     &c);
	/* The coarse clock (one tick, a few ms) is plenty for first/last seen and idle timeouts,
	 * and cheaper per packet. */
	__u64 now = bpf_ktime_get_coarse_ns();
	__u32 flag_bits = (__u32)p.tcp_flags << (dir * 8);

	struct vigil_flow_value *v = bpf_map_lookup_elem(&vigil_flows, &key);
	if (v) {
		struct vigil_flow_counters *d = &v->dir[dir & 1];
		__sync_fetch_and_add(&d->packets, c.packets);
		__sync_fetch_and_add(&d->bytes, c.bytes);
		__sync_fetch_and_add(&d->payload, c.payload);
		if ((v->tcp_flags & flag_bits) != flag_bits)
			__sync_fetch_and_or(&v->tcp_flags, flag_bits);
		v->last_ns = now;
		return;
	}

	struct vigil_flow_value nv = {};
	nv.first_ns = now;
	nv.last_ns = now;
	nv.dir[dir & 1] = c;
	nv.tcp_flags = flag_bits;
	nv.origin = dir;
	nv.hook = hook;
	nv.icmp_type = p.icmp_type;
	nv.icmp_code = p.icmp_code;
	if (bpf_map_update_elem(&vigil_flows, &key, &nv, BPF_NOEXIST)) {
		/* Another CPU created it first (count this packet there), or no memory. */
		v = bpf_map_lookup_elem(&vigil_flows, &key);
		if (!v) {
			flow__stat(VIGIL_FLOW_STAT_FLOW_INSERT_FAILED);
			return;
		}
		struct vigil_flow_counters *d = &v->dir[dir & 1];
		__sync_fetch_and_add(&d->packets, c.packets);
		__sync_fetch_and_add(&d->bytes, c.bytes);
		__sync_fetch_and_add(&d->payload, c.payload);
		__sync_fetch_and_or(&v->tcp_flags, flag_bits);
		return;
	}
	flow__stat(VIGIL_FLOW_STAT_FLOWS_CREATED);

	struct vigil_flow_new_record *r = bpf_ringbuf_reserve(&vigil_flow_ring, sizeof(*r), 0);
	if (!r) {
		flow__stat(VIGIL_FLOW_STAT_FLOW_RECORDS_LOST);
		return;
	}
	r->hdr.type = VIGIL_REC_FLOW_NEW;
	r->hdr.version = VIGIL_FLOW_ABI_VERSION;
	r->hdr.size = sizeof(*r);
	r->hdr.ktime_ns = now;
	r->key = key;
	r->origin = dir;
	r->hook = hook;
	r->icmp_type = p.icmp_type;
	r->icmp_code = p.icmp_code;
	r->tcp_flags = p.tcp_flags;
	r->first = c;
	bpf_ringbuf_submit(r, flow__wakeup());
}

SEC("tc")
int vigil_flow_ingress(struct __sk_buff *skb)
{
	flow__track(skb, VIGIL_FLOW_INGRESS);
	return VIGIL_TC_ACT_UNSPEC;
}

SEC("tc")
int vigil_flow_egress(struct __sk_buff *skb)
{
	flow__track(skb, VIGIL_FLOW_EGRESS);
	return VIGIL_TC_ACT_UNSPEC;
}

/* ---- per-cgroup traffic (cgroup_skb) ---------------------------------------------------- */

static __always_inline void flow__cgroup(struct __sk_buff *skb, int egress)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct flow_pkt p = {};
	__u16 proto = bpf_ntohs(skb->protocol);

	if (proto != VIGIL_FLOW_ETH_P_IP && proto != VIGIL_FLOW_ETH_P_IPV6)
		return;
	/* cgroup_skb sees the packet from its IP header on. */
	if (flow__ip(data, end, 0, proto, &p)) {
		flow__stat(VIGIL_FLOW_STAT_MALFORMED);
		return;
	}
	struct vigil_traffic_key key = {};
	key.cgroup_id = bpf_skb_cgroup_id(skb);
	key.proto = p.proto == VIGIL_PROTO_TCP                                ? VIGIL_TRAFFIC_TCP
		    : p.proto == VIGIL_PROTO_UDP                              ? VIGIL_TRAFFIC_UDP
		    : p.proto == VIGIL_PROTO_ICMP || p.proto == VIGIL_PROTO_ICMPV6 ? VIGIL_TRAFFIC_ICMP
										     : VIGIL_TRAFFIC_OTHER;
	struct vigil_flow_counters c;
	flow__count(skb->len, skb->gso_size, skb->gso_segs, &p, &c);

	struct vigil_cgroup_traffic *t = bpf_map_lookup_elem(&vigil_cgroup_traffic, &key);
	if (!t) {
		struct vigil_cgroup_traffic zero = {};
		bpf_map_update_elem(&vigil_cgroup_traffic, &key, &zero, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&vigil_cgroup_traffic, &key);
		if (!t) {
			flow__stat(VIGIL_FLOW_STAT_CGROUP_UPDATE_FAILED);
			return;
		}
	}
	struct vigil_flow_counters *d = egress ? &t->out : &t->in; /* per-CPU: no atomics */
	d->packets += c.packets;
	d->bytes += c.bytes;
	d->payload += c.payload;
}

SEC("cgroup_skb/ingress")
int vigil_cgroup_ingress(struct __sk_buff *skb)
{
	flow__cgroup(skb, 0);
	return 1;
}

SEC("cgroup_skb/egress")
int vigil_cgroup_egress(struct __sk_buff *skb)
{
	flow__cgroup(skb, 1);
	return 1;
}

/* ---- socket owners (tracepoints) -------------------------------------------------------- */

static __always_inline void flow__owner_now(struct vigil_sock_owner *o)
{
	__u64 id = bpf_get_current_pid_tgid();

	o->tgid = id >> 32;
	o->tid = (__u32)id;
	o->uid = (__u32)bpf_get_current_uid_gid();
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->ktime_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

/* The socket's local and remote ends. Returns -1 for sockets Vigil does not attribute. */
static __always_inline int flow__sock_key(const struct sock *sk, struct vigil_sock_key *k)
{
	__u16 family = sk->__sk_common.skc_family;
	__u16 proto = sk->sk_protocol;

	if (sk->sk_type == VIGIL_SOCK_RAW)
		return -1;
	if (proto != VIGIL_PROTO_TCP && proto != VIGIL_PROTO_UDP && proto != VIGIL_PROTO_ICMP &&
	    proto != VIGIL_PROTO_ICMPV6)
		return -1;
	if (family == VIGIL_AF_INET) {
		__u32 l = sk->__sk_common.skc_rcv_saddr;
		__u32 r = sk->__sk_common.skc_daddr;
		if (l) {
			k->laddr[10] = 0xff;
			k->laddr[11] = 0xff;
			__builtin_memcpy(&k->laddr[12], &l, 4);
		}
		if (r) {
			k->raddr[10] = 0xff;
			k->raddr[11] = 0xff;
			__builtin_memcpy(&k->raddr[12], &r, 4);
		}
	} else if (family == VIGIL_AF_INET6) {
		BPF_CORE_READ_INTO(&k->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&k->raddr, sk, __sk_common.skc_v6_daddr);
	} else {
		return -1;
	}
	k->lport = sk->__sk_common.skc_num;
	k->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	k->proto = proto;
	return 0;
}

static __always_inline void flow__record_owner(const struct vigil_sock_key *k,
					       const struct vigil_sock_owner *o)
{
	struct vigil_sock_owner *cur = bpf_map_lookup_elem(&vigil_sock_owners, k);

	if (cur && cur->tgid == o->tgid)
		return;
	bpf_map_update_elem(&vigil_sock_owners, k, o, BPF_ANY);
	flow__stat(VIGIL_FLOW_STAT_OWNER_UPDATES);
}

static __always_inline void flow__sock_used(struct sock *sk, int ret)
{
	struct vigil_sock_key k = {};
	struct vigil_sock_owner o = {};

	if (ret <= 0 || !sk)
		return;
	/* Fast path: the socket was recorded with these ports (by this process, checked every
	 * VIGIL_SOCK_RECHECK uses). */
	__u16 lport = sk->__sk_common.skc_num;
	__u16 rport = sk->__sk_common.skc_dport;
	struct sock_seen *seen =
		bpf_sk_storage_get(&vigil_sock_seen, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (seen && seen->tgid && seen->lport == lport && seen->rport == rport &&
	    ++seen->uses % VIGIL_SOCK_RECHECK)
		return;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (seen && seen->tgid == tgid && seen->lport == lport && seen->rport == rport)
		return;
	if (flow__sock_key(sk, &k))
		return;
	flow__owner_now(&o);
	flow__record_owner(&k, &o);
	if (seen) {
		seen->tgid = tgid;
		seen->lport = lport;
		seen->rport = rport;
	}
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(vigil_sock_send, struct sock *sk, int ret, int flags)
{
	flow__sock_used(sk, ret);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(vigil_sock_recv, struct sock *sk, int ret, int flags)
{
	flow__sock_used(sk, ret);
	return 0;
}

/* connect() moves a TCP socket to SYN_SENT in the caller's context, before it has a local
 * port; the handshake ends in softirq context with both ends known. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(vigil_sock_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 addr = (__u64)sk;

	if (sk->sk_protocol != VIGIL_PROTO_TCP)
		return 0;
	if (newstate == VIGIL_TCP_SYN_SENT) {
		struct vigil_sock_owner o = {};
		flow__owner_now(&o);
		bpf_map_update_elem(&vigil_sock_pending, &addr, &o, BPF_ANY);
		return 0;
	}
	if (oldstate != VIGIL_TCP_SYN_SENT)
		return 0;
	struct vigil_sock_owner *o = bpf_map_lookup_elem(&vigil_sock_pending, &addr);
	if (!o)
		return 0;
	struct vigil_sock_key k = {};
	if (newstate == VIGIL_TCP_ESTABLISHED && !flow__sock_key(sk, &k))
		flow__record_owner(&k, o);
	bpf_map_delete_elem(&vigil_sock_pending, &addr);
	return 0;
}

/* ---- kernel drops (skb/kfree_skb) ------------------------------------------------------- */

/* Reads addresses, ports and flags of a dropped skb into r. */
static __always_inline void flow__drop_headers(struct sk_buff *skb, struct vigil_drop_record *r)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u16 th = skb->transport_header;
	__u16 proto = bpf_ntohs(skb->protocol);
	__u8 buf[40];

	if (proto != VIGIL_FLOW_ETH_P_IP && proto != VIGIL_FLOW_ETH_P_IPV6)
		return;
	if (bpf_probe_read_kernel(buf, sizeof(buf), head + nh))
		return;
	__u32 l4_off;
	if (proto == VIGIL_FLOW_ETH_P_IP) {
		if ((buf[0] >> 4) != 4 || (buf[0] & 0xf) < 5)
			return;
		r->proto = buf[9];
		r->saddr[10] = 0xff;
		r->saddr[11] = 0xff;
		r->daddr[10] = 0xff;
		r->daddr[11] = 0xff;
		__builtin_memcpy(&r->saddr[12], &buf[12], 4);
		__builtin_memcpy(&r->daddr[12], &buf[16], 4);
		r->flags = VIGIL_DROP_F_IP | VIGIL_DROP_F_V4;
		if (((buf[6] << 8) | buf[7]) & 0x1fff)
			return;
		l4_off = nh + (buf[0] & 0xf) * 4;
	} else {
		if ((buf[0] >> 4) != 6)
			return;
		__builtin_memcpy(r->saddr, &buf[8], 16);
		__builtin_memcpy(r->daddr, &buf[24], 16);
		r->flags = VIGIL_DROP_F_IP;
		__u8 nexthdr = buf[6];
		l4_off = nh + 40;
		/* Hop-by-hop (MLD), routing and destination options: two deep at most. */
		for (int i = 0; i < 2; i++) {
			if (nexthdr != 0 && nexthdr != 43 && nexthdr != 60)
				break;
			__u8 ext[2];
			if (bpf_probe_read_kernel(ext, sizeof(ext), head + l4_off))
				return;
			nexthdr = ext[0];
			l4_off += ((__u32)ext[1] + 1) * 8;
		}
		r->proto = nexthdr;
	}
	/* Prefer the kernel's own transport offset when it has set one. */
	if (th != 0xffff && th > nh)
		l4_off = th;
	__u8 l4[14];
	if (bpf_probe_read_kernel(l4, sizeof(l4), head + l4_off))
		return;
	if (r->proto == VIGIL_PROTO_TCP || r->proto == VIGIL_PROTO_UDP) {
		r->sport = ((__u16)l4[0] << 8) | l4[1];
		r->dport = ((__u16)l4[2] << 8) | l4[3];
		if (r->proto == VIGIL_PROTO_TCP)
			r->tcp_flags = l4[13];
		r->flags |= VIGIL_DROP_F_PORTS;
	} else if (r->proto == VIGIL_PROTO_ICMP || r->proto == VIGIL_PROTO_ICMPV6) {
		r->icmp_type = l4[0];
		r->icmp_code = l4[1];
		r->flags |= VIGIL_DROP_F_PORTS;
	}
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(vigil_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	/* Newer kernels report consumed (not dropped) skbs here too. */
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 0;
	__u32 idx = (__u32)reason < VIGIL_DROP_REASONS ? (__u32)reason : VIGIL_DROP_REASONS - 1;
	__u64 *count = bpf_map_lookup_elem(&vigil_drop_counts, &idx);
	if (count)
		*count += 1;
	flow__stat(VIGIL_FLOW_STAT_KERNEL_DROPS);
	/* Counted by reason, reported only when it is an IP packet (not a unix socket's or a
	 * netlink message's skb). */
	__u16 proto = bpf_ntohs(skb->protocol);
	if (proto != VIGIL_FLOW_ETH_P_IP && proto != VIGIL_FLOW_ETH_P_IPV6) {
		flow__stat(VIGIL_FLOW_STAT_DROP_NO_HEADER);
		return 0;
	}

	struct drop_sample *s = bpf_map_lookup_elem(&vigil_drop_sample, &idx);
	if (!s)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (now - s->window_ns >= VIGIL_FLOW_SAMPLE_WINDOW_NS) {
		s->window_ns = now;
		s->sampled = 0;
	}
	if (s->sampled >= cfg_drop_samples_per_cpu) {
		s->suppressed++;
		return 0;
	}
	struct vigil_drop_record *r = bpf_ringbuf_reserve(&vigil_flow_ring, sizeof(*r), 0);
	if (!r) {
		flow__stat(VIGIL_FLOW_STAT_DROP_RECORDS_LOST);
		return 0;
	}
	s->sampled++;
	__builtin_memset(&r->saddr, 0, sizeof(*r) - sizeof(r->hdr));
	r->hdr.type = VIGIL_REC_KERNEL_DROP;
	r->hdr.version = VIGIL_FLOW_ABI_VERSION;
	r->hdr.size = sizeof(*r);
	r->hdr.ktime_ns = now;
	r->reason = reason;
	r->len = skb->len;
	/* The device, else the one it came in on, in the namespace of the socket it reached
	 * (0 when neither tells: the agent does not name such an index). */
	struct net_device *dev = skb->dev;
	struct sock *sk = skb->sk;
	if (dev) {
		r->ifindex = dev->ifindex;
		r->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	} else {
		r->ifindex = skb->skb_iif;
		if (sk)
			r->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	}
	r->location = (__u64)location;
	r->suppressed = s->suppressed;
	s->suppressed = 0;
	flow__drop_headers(skb, r);
	flow__stat(VIGIL_FLOW_STAT_DROP_RECORDS);
	bpf_ringbuf_submit(r, flow__wakeup());
	return 0;
}
