/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Defensive packet parsing for XDP: every read is bounds-checked against data_end first.
 *
 * What the parser gives the filter, and the documented policy choices:
 *   - Ethernet, then up to VIGIL_XDP_MAX_VLANS 802.1Q/802.1ad tags. More tags: not parsed,
 *     the frame passes (stat xdp_vlan_too_deep).
 *   - Not IPv4/IPv6 (ARP, LLDP, ...): passes untouched (stat xdp_not_ip).
 *   - An IP header that is truncated or invalid (version, IHL < 5, options past the frame):
 *     passes to the kernel stack, which validates and drops it (stat xdp_malformed). No rule
 *     is matched against addresses that could not be read.
 *   - What is beyond the IP header is read only as far as it is needed and present:
 *       non-first fragments (IPv4 offset != 0, IPv6 fragment header offset != 0) have no L4
 *       header: protocol and addresses are known, ports are not (stat xdp_fragments);
 *       a TCP/UDP header cut short, or IPv6 extension headers deeper than
 *       VIGIL_XDP_MAX_V6_EXT, leave ports unknown too (stats xdp_l4_missing,
 *       xdp_ipv6_ext_too_deep).
 *     Rules that name ports never match a packet whose ports are unknown; rules on addresses
 *     and protocol still do.
 */
#pragma once

#include "vigil_bpf/common.bpf.h"
#include <bpf/bpf_endian.h>
#include <vigil/xdp.h>

#define VIGIL_ETH_P_IP 0x0800
#define VIGIL_ETH_P_IPV6 0x86DD
#define VIGIL_ETH_P_8021Q 0x8100
#define VIGIL_ETH_P_8021AD 0x88A8
#define VIGIL_IPPROTO_HOPOPTS 0
#define VIGIL_IPPROTO_ICMP 1
#define VIGIL_IPPROTO_TCP 6
#define VIGIL_IPPROTO_UDP 17
#define VIGIL_IPPROTO_ROUTING 43
#define VIGIL_IPPROTO_FRAGMENT 44
#define VIGIL_IPPROTO_AH 51
#define VIGIL_IPPROTO_ICMPV6 58
#define VIGIL_IPPROTO_DSTOPTS 60

/* Deepest L4 offset accepted: beyond it a frame is not parsed further (ports unknown). */
#define VIGIL_PKT_MAX_OFFSET 2048

enum vigil_parse_result {
	VIGIL_PARSE_IP = 0,
	VIGIL_PARSE_NOT_IP = 1,
	VIGIL_PARSE_MALFORMED = 2,
	VIGIL_PARSE_VLAN_TOO_DEEP = 3,
};

struct vigil_pkt {
	/* Addresses as IPv6, IPv4-mapped for IPv4; 8-byte aligned for masked compares. */
	__u64 src[2];
	__u64 dst[2];
	__u16 sport; /* host byte order, valid with has_ports */
	__u16 dport;
	__u8 proto;
	__u8 v4;
	__u8 has_ports;
	__u8 flags; /* enum vigil_xdp_pkt_flags */
	__u32 len;
};

/* Parses the L4 ports at offset off, when present. */
static __always_inline void packet__ports(void *data, void *end, __u32 off, struct vigil_pkt *p)
{
	if (p->proto != VIGIL_IPPROTO_TCP && p->proto != VIGIL_IPPROTO_UDP)
		return;
	if (off > VIGIL_PKT_MAX_OFFSET) {
		p->flags |= VIGIL_XDP_P_NO_L4;
		return;
	}
	__u16 *ports = data + off;
	if ((void *)(ports + 2) > end) {
		p->flags |= VIGIL_XDP_P_NO_L4;
		return;
	}
	p->sport = bpf_ntohs(ports[0]);
	p->dport = bpf_ntohs(ports[1]);
	p->has_ports = 1;
}

static __always_inline int packet__ipv4(void *data, void *end, __u32 off, struct vigil_pkt *p)
{
	struct iphdr *ip = data + off;

	if (off > VIGIL_PKT_MAX_OFFSET || (void *)(ip + 1) > end)
		return VIGIL_PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return VIGIL_PARSE_MALFORMED;
	__u32 hlen = ip->ihl * 4;
	if (data + off + hlen > end)
		return VIGIL_PARSE_MALFORMED;

	p->v4 = 1;
	p->proto = ip->protocol;
	/* ::ffff:a.b.c.d, in network byte order inside the 16 bytes. */
	p->src[0] = 0;
	p->dst[0] = 0;
	p->src[1] = ((__u64)ip->saddr << 32) | bpf_htonl(0xffff);
	p->dst[1] = ((__u64)ip->daddr << 32) | bpf_htonl(0xffff);

	__u16 frag = bpf_ntohs(ip->frag_off);
	if (frag & 0x1fff) {
		p->flags |= VIGIL_XDP_P_FRAGMENT;
		return VIGIL_PARSE_IP;
	}
	packet__ports(data, end, off + hlen, p);
	return VIGIL_PARSE_IP;
}

static __always_inline int packet__ipv6(void *data, void *end, __u32 off, struct vigil_pkt *p)
{
	struct ipv6hdr *ip = data + off;

	if (off > VIGIL_PKT_MAX_OFFSET || (void *)(ip + 1) > end)
		return VIGIL_PARSE_MALFORMED;
	if (ip->version != 6)
		return VIGIL_PARSE_MALFORMED;
	__builtin_memcpy(p->src, &ip->saddr, 16);
	__builtin_memcpy(p->dst, &ip->daddr, 16);

	__u8 nh = ip->nexthdr;
	off += sizeof(*ip);
	int i;
	for (i = 0; i < VIGIL_XDP_MAX_V6_EXT; i++) {
		if (nh != VIGIL_IPPROTO_HOPOPTS && nh != VIGIL_IPPROTO_ROUTING &&
		    nh != VIGIL_IPPROTO_DSTOPTS && nh != VIGIL_IPPROTO_FRAGMENT &&
		    nh != VIGIL_IPPROTO_AH)
			break;
		if (off > VIGIL_PKT_MAX_OFFSET) {
			p->flags |= VIGIL_XDP_P_NO_L4;
			p->proto = nh;
			return VIGIL_PARSE_IP;
		}
		__u8 *h = data + off;
		if ((void *)(h + 8) > end) {
			/* Every extension header is at least 8 bytes. */
			p->flags |= VIGIL_XDP_P_NO_L4;
			p->proto = nh;
			return VIGIL_PARSE_IP;
		}
		if (nh == VIGIL_IPPROTO_FRAGMENT) {
			__u16 frag = bpf_ntohs(*(__u16 *)(h + 2));
			nh = h[0];
			if (frag & 0xfff8) {
				/* Not the first fragment: the L4 header is elsewhere. */
				p->flags |= VIGIL_XDP_P_FRAGMENT;
				p->proto = nh;
				return VIGIL_PARSE_IP;
			}
			off += 8;
		} else if (nh == VIGIL_IPPROTO_AH) {
			nh = h[0];
			off += ((__u32)h[1] + 2) * 4;
		} else {
			nh = h[0];
			off += ((__u32)h[1] + 1) * 8;
		}
	}
	p->proto = nh;
	if (i == VIGIL_XDP_MAX_V6_EXT &&
	    (nh == VIGIL_IPPROTO_HOPOPTS || nh == VIGIL_IPPROTO_ROUTING ||
	     nh == VIGIL_IPPROTO_DSTOPTS || nh == VIGIL_IPPROTO_FRAGMENT || nh == VIGIL_IPPROTO_AH)) {
		p->flags |= VIGIL_XDP_P_NO_L4 | VIGIL_XDP_P_EXT_TOO_DEEP;
		return VIGIL_PARSE_IP;
	}
	packet__ports(data, end, off, p);
	return VIGIL_PARSE_IP;
}

/* Fills p from the frame [data, end). Returns enum vigil_parse_result. */
static __always_inline int packet__parse(void *data, void *end, struct vigil_pkt *p)
{
	struct ethhdr *eth = data;

	p->len = end - data;
	if ((void *)(eth + 1) > end)
		return VIGIL_PARSE_MALFORMED;
	__u16 proto = bpf_ntohs(eth->h_proto);
	__u32 off = sizeof(*eth);
	int i;
	for (i = 0; i < VIGIL_XDP_MAX_VLANS; i++) {
		if (proto != VIGIL_ETH_P_8021Q && proto != VIGIL_ETH_P_8021AD)
			break;
		__u16 *tag = data + off;
		if ((void *)(tag + 2) > end)
			return VIGIL_PARSE_MALFORMED;
		proto = bpf_ntohs(tag[1]);
		off += 4;
		p->flags |= VIGIL_XDP_P_VLAN;
	}
	if (proto == VIGIL_ETH_P_8021Q || proto == VIGIL_ETH_P_8021AD)
		return VIGIL_PARSE_VLAN_TOO_DEEP;
	if (proto == VIGIL_ETH_P_IP)
		return packet__ipv4(data, end, off, p);
	if (proto == VIGIL_ETH_P_IPV6)
		return packet__ipv6(data, end, off, p);
	return VIGIL_PARSE_NOT_IP;
}
