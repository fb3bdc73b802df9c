/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Header parsing and byte accounting for the flow programs (tc and cgroup_skb). Every read is
 * bounds-checked against data_end. What it gives:
 *   - addresses (IPv4 as ::ffff:a.b.c.d), protocol, ports (TCP/UDP), the echo identifier and
 *     type/code (ICMP, ICMPv6), TCP flags;
 *   - the header lengths of one packet (IP with options or IPv6 extension headers, plus the
 *     TCP/UDP/ICMP header), which the GSO correction multiplies by the segment count.
 * Not parsed: more than one VLAN tag in the frame, IPv6 extension chains deeper than
 * VIGIL_FLOW_MAX_V6_EXT, headers outside the linear part of the skb (stat flow_malformed).
 * A non-first fragment has protocol and addresses but no ports; its whole IP payload counts as
 * payload.
 */
#pragma once

#include "vigil_bpf/common.bpf.h"
#include <bpf/bpf_endian.h>
#include <vigil/flow.h>

#define VIGIL_FLOW_ETH_P_IP 0x0800
#define VIGIL_FLOW_ETH_P_IPV6 0x86DD
#define VIGIL_FLOW_ETH_P_8021Q 0x8100
#define VIGIL_FLOW_ETH_P_8021AD 0x88A8
#define VIGIL_FLOW_MAX_V6_EXT 4

#define VIGIL_PROTO_ICMP 1
#define VIGIL_PROTO_TCP 6
#define VIGIL_PROTO_UDP 17
#define VIGIL_PROTO_ICMPV6 58

struct flow_pkt {
	__u64 src[2]; /* big-endian halves of the IPv6 (or IPv4-mapped) address */
	__u64 dst[2];
	__u16 sport;
	__u16 dport;
	__u16 l3_hdr; /* IP header with options / extension headers */
	__u16 l4_hdr; /* TCP/UDP/ICMP header; 0 when not read */
	__u8 proto;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
};

/* Reads the L4 header at off. */
static __always_inline void flow__l4(void *data, void *end, __u32 off, struct flow_pkt *p)
{
	if (off > 1024)
		return;
	__u8 *l4 = data + off;
	/* One register for the pointer that is checked and the one that is read: otherwise clang
	 * may check data + (off + 20) and read through data + off, which the verifier cannot
	 * relate. */
	asm volatile("" : "+r"(l4));
	if (p->proto == VIGIL_PROTO_TCP) {
		if ((void *)(l4 + 20) > end)
			return;
		p->sport = ((__u16)l4[0] << 8) | l4[1];
		p->dport = ((__u16)l4[2] << 8) | l4[3];
		p->tcp_flags = l4[13];
		p->l4_hdr = (l4[12] >> 4) * 4;
	} else if (p->proto == VIGIL_PROTO_UDP) {
		if ((void *)(l4 + 8) > end)
			return;
		p->sport = ((__u16)l4[0] << 8) | l4[1];
		p->dport = ((__u16)l4[2] << 8) | l4[3];
		p->l4_hdr = 8;
	} else if (p->proto == VIGIL_PROTO_ICMP || p->proto == VIGIL_PROTO_ICMPV6) {
		if ((void *)(l4 + 8) > end)
			return;
		p->icmp_type = l4[0];
		p->icmp_code = l4[1];
		p->l4_hdr = 8;
		/* Echo request and reply share the identifier: one flow for both ways. */
		__u8 t = l4[0];
		if ((p->proto == VIGIL_PROTO_ICMP && (t == 8 || t == 0)) ||
		    (p->proto == VIGIL_PROTO_ICMPV6 && (t == 128 || t == 129))) {
			p->sport = ((__u16)l4[4] << 8) | l4[5];
			p->dport = p->sport;
		}
	}
}

/* Parses the IP packet at off. Returns 0 on success, -1 when it is not a valid IP header. */
static __always_inline int flow__ip(void *data, void *end, __u32 off, __u16 eth_proto,
				    struct flow_pkt *p)
{
	if (off > 64)
		return -1;
	if (eth_proto == VIGIL_FLOW_ETH_P_IP) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			return -1;
		p->l3_hdr = ip->ihl * 4;
		p->proto = ip->protocol;
		p->src[0] = 0;
		p->dst[0] = 0;
		/* ::ffff:a.b.c.d: bytes 8-11 are 00 00 ff ff, 12-15 the address. */
		p->src[1] = ((__u64)ip->saddr << 32) | bpf_htonl(0xffff);
		p->dst[1] = ((__u64)ip->daddr << 32) | bpf_htonl(0xffff);
		if (bpf_ntohs(ip->frag_off) & 0x1fff)
			return 0; /* a later fragment: no L4 header */
		flow__l4(data, end, off + p->l3_hdr, p);
		return 0;
	}
	struct ipv6hdr *ip6 = data + off;
	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return -1;
	__builtin_memcpy(p->src, &ip6->saddr, 16);
	__builtin_memcpy(p->dst, &ip6->daddr, 16);
	__u8 nh = ip6->nexthdr;
	__u32 hdr = sizeof(*ip6);
	for (int i = 0; i < VIGIL_FLOW_MAX_V6_EXT; i++) {
		if (nh != 0 && nh != 43 && nh != 60 && nh != 44)
			break;
		__u8 *h = data + off + hdr;
		if (hdr > 512 || (void *)(h + 8) > end)
			return -1;
		if (nh == 44) {
			hdr += 8;
			if (bpf_ntohs(*(__u16 *)(h + 2)) & 0xfff8) {
				p->proto = h[0];
				p->l3_hdr = hdr;
				return 0;
			}
		} else {
			hdr += ((__u32)h[1] + 1) * 8;
		}
		nh = h[0];
	}
	p->proto = nh;
	p->l3_hdr = hdr;
	flow__l4(data, end, off + hdr, p);
	return 0;
}

/*
 * Counts one skb as what went on the wire: l3_len is the skb's length from the IP header on.
 * A GSO/GRO skb stands for gso_segs packets (or payload / gso_size when the count is unset),
 * each carrying its own copy of the headers.
 */
static __always_inline void flow__count(__u32 l3_len, __u32 gso_size, __u32 gso_segs,
					const struct flow_pkt *p, struct vigil_flow_counters *c)
{
	__u32 hdrs = (__u32)p->l3_hdr + p->l4_hdr;
	__u32 payload = l3_len > hdrs ? l3_len - hdrs : 0;
	__u32 segs = 1;

	if (gso_size) {
		segs = gso_segs;
		if (!segs)
			segs = (payload + gso_size - 1) / gso_size;
		if (!segs)
			segs = 1;
	}
	c->packets = segs;
	c->payload = payload;
	c->bytes = (__u64)payload + (__u64)segs * hdrs;
}
