// SPDX-License-Identifier: GPL-2.0-only
/*
 * The XDP packet filter: parse -> look the rule set up -> count -> drop or pass, with sampled
 * drop records. Its own object (vigil_xdp) because its lifetime is not the agent's: the maps
 * and the links are pinned and outlive the process (see agent/src/bpf/xdp_datapath.hpp).
 * The contract is bpf/abi/vigil/xdp.h.
 */
#include "vigil_bpf/packet.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Inner map templates: the agent creates one of each per rule set, sized to it. Sizes, not
 * BTF types: clang emits only a forward declaration for a type used nowhere else. */
struct vigil_xdp_trie {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct vigil_xdp_lpm_key));
	__uint(value_size, sizeof(struct vigil_xdp_candidates));
};

struct vigil_xdp_trie4 {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct vigil_xdp_lpm4_key));
	__uint(value_size, sizeof(struct vigil_xdp_candidates));
};

struct vigil_xdp_entries {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct vigil_xdp_entry));
};

struct vigil_xdp_scopes {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));   /* ifindex */
	__uint(value_size, sizeof(__u64)); /* scope bits */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct vigil_xdp_trie);
} vigil_xdp_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct vigil_xdp_trie);
} vigil_xdp_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct vigil_xdp_trie4);
} vigil_xdp_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct vigil_xdp_trie4);
} vigil_xdp_dst4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct vigil_xdp_entries);
} vigil_xdp_ents SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct vigil_xdp_scopes);
} vigil_xdp_ifs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_xdp_state);
} vigil_xdp_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_XDP_MAX_RULES);
	__type(key, __u32);
	__type(value, struct vigil_xdp_counter);
} vigil_xdp_ctrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_XDP_MAX_RULES);
	__type(key, __u32);
	__type(value, struct vigil_xdp_name);
} vigil_xdp_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* sized by the agent */
	__type(key, struct vigil_xdp_bucket_key);
	__type(value, struct vigil_xdp_bucket);
} vigil_xdp_bkts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* sized by the agent */
} vigil_xdp_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_XDP_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} vigil_xdp_stats SEC(".maps");

/* Never read by the program: userspace updates it to wait for an RCU grace period. */
struct vigil_xdp_barrier_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct vigil_xdp_barrier_inner);
} vigil_xdp_bar SEC(".maps");

/* The parsed packet, per CPU. Kept in map memory rather than on the stack so that the
 * verifier, which tracks stack values exactly, does not verify the lookup once per parser
 * outcome (that cost 500,000 instructions and 2.5 s of load time). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_pkt);
} vigil_xdp_pkt SEC(".maps");

#define VIGIL_RING_WAKEUP_BYTES (64 * 1024)
#define VIGIL_NO_RANK 0xffffffffu

static __always_inline void xdp__stat(enum vigil_xdp_stat id)
{
	__u32 key = id;
	__u64 *v = bpf_map_lookup_elem(&vigil_xdp_stats, &key);

	if (v)
		*v += 1;
}

static __always_inline bool xdp__masked_eq(const __u64 *addr, const __u8 *net, const __u8 *mask)
{
	const __u64 *n = (const __u64 *)net, *m = (const __u64 *)mask;

	return ((addr[0] & m[0]) == n[0]) && ((addr[1] & m[1]) == n[1]);
}

static __always_inline bool xdp__matches(const struct vigil_xdp_entry *e,
					 const struct vigil_pkt *p, __u64 scopes)
{
	if (!(e->scopes & scopes))
		return false;
	if ((e->flags & VIGIL_XDP_F_V4) && !p->v4)
		return false;
	if ((e->flags & VIGIL_XDP_F_V6) && p->v4)
		return false;
	if (e->proto && e->proto != p->proto)
		return false;
	if (e->flags & VIGIL_XDP_F_PORTS) {
		if (!p->has_ports || p->dport < e->port_lo || p->dport > e->port_hi)
			return false;
	}
	return xdp__masked_eq(p->src, e->src_net, e->src_mask) &&
	       xdp__masked_eq(p->dst, e->dst_net, e->dst_mask);
}

/* Scans one candidate list (best rank first) for an entry better than *best_rank. */
static __always_inline const struct vigil_xdp_entry *
xdp__scan(const struct vigil_xdp_candidates *c, void *entries, const struct vigil_pkt *p,
	  __u64 scopes, __u32 *best_rank)
{
	__u32 n = c->count;

	for (__u32 i = 0; i < VIGIL_XDP_CANDIDATES; i++) {
		if (i >= n)
			break;
		__u32 idx = c->entry[i];
		const struct vigil_xdp_entry *e = bpf_map_lookup_elem(entries, &idx);
		if (!e)
			continue;
		if (e->rank >= *best_rank)
			break;
		if (xdp__matches(e, p, scopes)) {
			*best_rank = e->rank;
			return e;
		}
	}
	return NULL;
}

/* The candidate list for the packet's source (dst 0) or destination (dst 1) address, from
 * the trie of its family. */
static __always_inline const struct vigil_xdp_candidates *
xdp__candidates(const struct vigil_pkt *p, __u32 gen, int dst)
{
	const __u64 *addr = dst ? p->dst : p->src;
	void *trie;

	if (p->v4) {
		struct vigil_xdp_lpm4_key key4 = { .prefixlen = 32 };

		trie = dst ? bpf_map_lookup_elem(&vigil_xdp_dst4, &gen)
			   : bpf_map_lookup_elem(&vigil_xdp_src4, &gen);
		if (!trie)
			return NULL;
		__builtin_memcpy(key4.addr, (const __u8 *)addr + 12, 4);
		return bpf_map_lookup_elem(trie, &key4);
	}
	struct vigil_xdp_lpm_key key = { .prefixlen = 128 };

	trie = dst ? bpf_map_lookup_elem(&vigil_xdp_dst, &gen)
		   : bpf_map_lookup_elem(&vigil_xdp_src, &gen);
	if (!trie)
		return NULL;
	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(trie, &key);
}

/* Rate limit (GCRA). True when the packet is within the rate. */
static __always_inline bool xdp__conforms(const struct vigil_xdp_entry *e,
					  const struct vigil_pkt *p, __u64 now)
{
	struct vigil_xdp_bucket_key key = { .slot = e->slot };
	__u32 bits = p->v4 ? 96 + e->rate_prefix_v4 : e->rate_prefix_v6;
	const __u8 *src = (const __u8 *)p->src;

#pragma unroll
	for (int i = 0; i < 16; i++) {
		__u32 lo = i * 8;
		__u8 mask = bits >= lo + 8 ? 0xff : bits <= lo ? 0 : (__u8)(0xff << (8 - (bits - lo)));
		key.addr[i] = src[i] & mask;
	}

	struct vigil_xdp_bucket *b = bpf_map_lookup_elem(&vigil_xdp_bkts, &key);
	if (!b) {
		struct vigil_xdp_bucket fresh = { .tat_ns = now + e->rate_interval_ns };
		if (bpf_map_update_elem(&vigil_xdp_bkts, &key, &fresh, BPF_NOEXIST) == 0)
			return true;
		b = bpf_map_lookup_elem(&vigil_xdp_bkts, &key);
		if (!b) {
			xdp__stat(VIGIL_XDP_STAT_BUCKETS_MISSING);
			return true;
		}
	}
	for (int i = 0; i < 4; i++) {
		__u64 tat = b->tat_ns;
		__u64 base = tat > now ? tat : now;
		if (base - now > e->rate_burst_ns)
			return false;
		if (__sync_val_compare_and_swap(&b->tat_ns, tat, base + e->rate_interval_ns) == tat)
			return true;
	}
	/* Lost the race four times to other CPUs on one bucket: that source is flooding. */
	return false;
}

static __always_inline void xdp__record(struct xdp_md *ctx, const struct vigil_xdp_entry *e,
					const struct vigil_pkt *p, struct vigil_xdp_counter *ctr,
					const struct vigil_xdp_state *st, __u8 verdict, __u64 now)
{
	/* The coarse clock (one tick) is enough to pace records, and cheaper on a flood. */
	if (now - ctr->sample_window_ns >= VIGIL_XDP_SAMPLE_WINDOW_NS) {
		ctr->sample_window_ns = now;
		ctr->sampled = 0;
	}
	if (ctr->sampled >= st->sample_per_cpu) {
		ctr->suppressed++;
		xdp__stat(VIGIL_XDP_STAT_RECORDS_SUPPRESSED);
		return;
	}
	struct vigil_xdp_drop_record *r =
		bpf_ringbuf_reserve(&vigil_xdp_ring, sizeof(*r), 0);
	if (!r) {
		xdp__stat(VIGIL_XDP_STAT_RECORDS_LOST);
		return;
	}
	ctr->sampled++;
	r->hdr.type = VIGIL_REC_XDP_DROP;
	r->hdr.version = VIGIL_XDP_ABI_VERSION;
	r->hdr.size = sizeof(*r);
	r->hdr.ktime_ns = bpf_ktime_get_ns();
	r->slot = e->slot;
	r->ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(r->src, p->src, 16);
	__builtin_memcpy(r->dst, p->dst, 16);
	r->src_port = p->has_ports ? p->sport : 0;
	r->dst_port = p->has_ports ? p->dport : 0;
	r->family = p->v4 ? 4 : 6;
	r->proto = p->proto;
	r->verdict = verdict;
	r->pkt_flags = p->flags;
	r->pkt_len = p->len;
	r->suppressed = ctr->suppressed > 0xffffffffu ? 0xffffffffu : (__u32)ctr->suppressed;
	ctr->suppressed = 0;
	xdp__stat(VIGIL_XDP_STAT_RECORDS);
	__u64 flags = bpf_ringbuf_query(&vigil_xdp_ring, BPF_RB_AVAIL_DATA) >= VIGIL_RING_WAKEUP_BYTES
			      ? BPF_RB_FORCE_WAKEUP
			      : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(r, flags);
}

/* Counts the packet against the rule that won and returns the verdict. */
static __always_inline int xdp__enforce(struct xdp_md *ctx, const struct vigil_xdp_entry *e,
					const struct vigil_pkt *p,
					const struct vigil_xdp_state *st)
{
	__u32 slot = e->slot;
	struct vigil_xdp_counter *ctr = bpf_map_lookup_elem(&vigil_xdp_ctrs, &slot);
	bool audit = e->flags & VIGIL_XDP_F_AUDIT;
	__u8 verdict;
	__u64 now;

	if (!ctr)
		return XDP_PASS;
	ctr->packets++;
	ctr->bytes += p->len;
	if (e->flags & VIGIL_XDP_F_RATELIMIT) {
		now = bpf_ktime_get_ns();
		if (xdp__conforms(e, p, now))
			return XDP_PASS;
		ctr->limited_packets++;
		ctr->limited_bytes += p->len;
		verdict = audit ? VIGIL_XDP_V_RATE_AUDIT : VIGIL_XDP_V_RATE_DROPPED;
	} else {
		if (e->action != VIGIL_XDP_ACT_DROP)
			return XDP_PASS;
		now = bpf_ktime_get_coarse_ns();
		verdict = audit ? VIGIL_XDP_V_AUDIT : VIGIL_XDP_V_DROPPED;
	}
	xdp__record(ctx, e, p, ctr, st, verdict, now);
	return audit ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int vigil_xdp_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;

	const struct vigil_xdp_state *st = bpf_map_lookup_elem(&vigil_xdp_state, &zero);
	if (!st || !(st->flags & VIGIL_XDP_S_ACTIVE))
		return XDP_PASS;

	struct vigil_pkt *p = bpf_map_lookup_elem(&vigil_xdp_pkt, &zero);
	if (!p)
		return XDP_PASS;
	__builtin_memset(p, 0, sizeof(*p));
	switch (packet__parse(data, end, p)) {
	case VIGIL_PARSE_IP:
		break;
	case VIGIL_PARSE_NOT_IP:
		xdp__stat(VIGIL_XDP_STAT_NOT_IP);
		return XDP_PASS;
	case VIGIL_PARSE_VLAN_TOO_DEEP:
		xdp__stat(VIGIL_XDP_STAT_VLAN_TOO_DEEP);
		return XDP_PASS;
	default:
		xdp__stat(VIGIL_XDP_STAT_MALFORMED);
		return XDP_PASS;
	}
	/* Read back from map memory: from here on the verifier sees one packet, not one per
	 * parser outcome. */
	p = bpf_map_lookup_elem(&vigil_xdp_pkt, &zero);
	if (!p)
		return XDP_PASS;
	if (p->flags & VIGIL_XDP_P_FRAGMENT)
		xdp__stat(VIGIL_XDP_STAT_FRAGMENTS);
	if (p->flags & VIGIL_XDP_P_EXT_TOO_DEEP)
		xdp__stat(VIGIL_XDP_STAT_EXT_TOO_DEEP);
	else if (p->flags & VIGIL_XDP_P_NO_L4)
		xdp__stat(VIGIL_XDP_STAT_NO_L4);

	/* Only gen is read from the state (once): which parts a rule set has is told by its own
	 * inner maps, present or not, so a packet never pairs one set's gen with another's
	 * flags while userspace rewrites the state. */
	__u32 gen = st->gen & 1;
	void *entries = bpf_map_lookup_elem(&vigil_xdp_ents, &gen);
	if (!entries)
		return XDP_PASS;

	__u64 scopes = 1ull << (VIGIL_XDP_MAX_SCOPES - 1); /* every interface but loopback */
	void *ifs = bpf_map_lookup_elem(&vigil_xdp_ifs, &gen);
	if (ifs) {
		__u32 ifindex = ctx->ingress_ifindex;
		__u64 *s = bpf_map_lookup_elem(ifs, &ifindex);
		if (s)
			scopes = *s;
	}

	const struct vigil_xdp_entry *best = NULL, *e;
	const struct vigil_xdp_candidates *c;
	__u32 best_rank = VIGIL_NO_RANK;

	c = xdp__candidates(p, gen, 0);
	if (c && (e = xdp__scan(c, entries, p, scopes, &best_rank)))
		best = e;
	c = xdp__candidates(p, gen, 1);
	if (c && (e = xdp__scan(c, entries, p, scopes, &best_rank)))
		best = e;
	if (!best)
		return XDP_PASS;
	return xdp__enforce(ctx, best, p, st);
}
