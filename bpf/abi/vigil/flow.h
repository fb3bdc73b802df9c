/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Network flows, per-cgroup traffic, socket owners and kernel drops: the kernel <-> userspace
 * contract of the vigil_flow object (bpf/progs/flow.bpf.c).
 *
 * Flows. tc programs on the watched interfaces keep one entry per flow and interface in
 * vigil_flows (an LRU hash: when it is full the kernel evicts the least recently used entry).
 * The key is canonical: of the two (address, port) ends, the lower one is "a" (addresses
 * compared as two big-endian 64-bit halves, then the port), so both directions of a flow find
 * the same entry with one lookup. origin says which end sent the first packet Vigil saw. A new
 * entry also goes to the ring buffer as a vigil_flow_new_record; updates and ends are the
 * agent's: it scans the table.
 *
 * Bytes. Every byte counter here counts IP bytes (IP header to end of packet) per packet as
 * the packet went on the wire: a GSO or GRO super-packet counts as its segments, each with the
 * headers of the first (IP and TCP/UDP/ICMP). payload is what follows the L4 header.
 *
 * Socket owners. The socket tracepoints (sock_send_length, sock_recv_length in process
 * context; inet_sock_set_state for TCP connects) record which process used a socket, keyed by
 * its local and remote address and port; the agent joins flows to them. Addresses are IPv6,
 * IPv4 as ::ffff:a.b.c.d. An unconnected UDP socket has no remote end: its key has a zero
 * remote address and port.
 */
#pragma once

#ifndef __bpf__
#include <linux/types.h>
#endif

#include "vigil/records.h"

#define VIGIL_FLOW_ABI_VERSION 1
#define VIGIL_DROP_REASONS 512 /* skb_drop_reason values counted (larger ones share the last) */
#define VIGIL_FLOW_SAMPLE_WINDOW_NS 1000000000ULL

enum vigil_flow_dir_index {
	VIGIL_FLOW_AB = 0, /* from end a to end b */
	VIGIL_FLOW_BA = 1,
};

/* vigil_flow_value.hook, vigil_flow_new_record.hook */
enum vigil_flow_hook {
	VIGIL_FLOW_INGRESS = 0,
	VIGIL_FLOW_EGRESS = 1,
};

/* TCP flag bits as in the TCP header's 13th byte. */
enum vigil_tcp_flag {
	VIGIL_TCP_FIN = 0x01,
	VIGIL_TCP_SYN = 0x02,
	VIGIL_TCP_RST = 0x04,
	VIGIL_TCP_PSH = 0x08,
	VIGIL_TCP_ACK = 0x10,
	VIGIL_TCP_URG = 0x20,
	VIGIL_TCP_ECE = 0x40,
	VIGIL_TCP_CWR = 0x80,
};

struct vigil_flow_key {
	__u8 a_addr[16];
	__u8 b_addr[16];
	__u16 a_port; /* host byte order; ICMP echo: the identifier; other ICMP: 0 */
	__u16 b_port;
	__u32 ifindex;
	__u8 proto;
	__u8 pad[3];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_flow_key) == 44, "vigil_flow_key ABI");

struct vigil_flow_counters {
	__u64 packets;
	__u64 bytes;
	__u64 payload;
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_flow_counters) == 24, "vigil_flow_counters ABI");

struct vigil_flow_value {
	__u64 first_ns; /* bpf_ktime_get_coarse_ns() of the first and the latest packet */
	__u64 last_ns;
	struct vigil_flow_counters dir[2]; /* enum vigil_flow_dir_index */
	__u32 tcp_flags; /* bits 0-7: flags seen a->b; bits 8-15: b->a */
	__u8 origin;     /* enum vigil_flow_dir_index of the first packet */
	__u8 hook;       /* enum vigil_flow_hook of the first packet */
	__u8 icmp_type;  /* of the first packet */
	__u8 icmp_code;
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_flow_value) == 72, "vigil_flow_value ABI");

/* One entry of the flow table as the agent reads it (batched map reads). */
struct vigil_flow_entry {
	struct vigil_flow_key key;
	struct vigil_flow_value value;
};

/* VIGIL_REC_FLOW_NEW: the first packet of a flow on an interface (hdr.ktime_ns = first_ns). */
struct vigil_flow_new_record {
	struct vigil_record_hdr hdr;
	struct vigil_flow_key key;
	__u8 origin;
	__u8 hook;
	__u8 icmp_type;
	__u8 icmp_code;
	__u32 tcp_flags; /* of the first packet */
	struct vigil_flow_counters first; /* the first packet (or super-packet) */
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_flow_new_record) == 96, "vigil_flow_new_record ABI");

/* vigil_drop_record.flags */
enum vigil_drop_flags {
	VIGIL_DROP_F_IP = 1 << 0,    /* addresses were read */
	VIGIL_DROP_F_PORTS = 1 << 1, /* ports (or ICMP type/code) were read */
	VIGIL_DROP_F_V4 = 1 << 2,
};

/* VIGIL_REC_KERNEL_DROP: one sampled packet the kernel freed with a drop reason. */
struct vigil_drop_record {
	struct vigil_record_hdr hdr;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 ifindex;
	__u32 reason;   /* enum skb_drop_reason of this kernel (names from its BTF) */
	__u32 len;      /* skb->len */
	__u32 netns;    /* inode of the network namespace of ifindex (0: unknown) */
	__u8 proto;
	__u8 flags;     /* enum vigil_drop_flags */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 pad[7];
	__u64 suppressed; /* drops of this reason on this CPU not reported since the last record */
	__u64 location;   /* kernel address that dropped it */
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_drop_record) == 96, "vigil_drop_record ABI");

struct vigil_sock_key {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport; /* host byte order */
	__u16 rport;
	__u8 proto;
	__u8 pad[3];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_sock_key) == 40, "vigil_sock_key ABI");

struct vigil_sock_owner {
	__u32 tgid;
	__u32 tid;
	__u32 uid;
	__u32 pad;
	__u64 cgroup_id;
	__u64 ktime_ns; /* when this owner was last recorded */
	char comm[VIGIL_COMM_LEN];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_sock_owner) == 48, "vigil_sock_owner ABI");

/* vigil_traffic_key.proto */
enum vigil_traffic_proto {
	VIGIL_TRAFFIC_TCP = 0,
	VIGIL_TRAFFIC_UDP = 1,
	VIGIL_TRAFFIC_ICMP = 2, /* ICMP and ICMPv6 */
	VIGIL_TRAFFIC_OTHER = 3,
};

struct vigil_traffic_key {
	__u64 cgroup_id;
	__u32 proto; /* enum vigil_traffic_proto */
	__u32 pad;
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_traffic_key) == 16, "vigil_traffic_key ABI");

struct vigil_cgroup_traffic {
	struct vigil_flow_counters in;
	struct vigil_flow_counters out;
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_cgroup_traffic) == 48, "vigil_cgroup_traffic ABI");

/* Per-CPU counters of the flow object (vigil_flow_stats), summed by the agent. */
#define VIGIL_FLOW_STATS(X)                                                                \
	X(FLOWS_CREATED, "flows_created")                                                  \
	X(FLOW_INSERT_FAILED, "flow_insert_failed")                                        \
	X(FLOW_RECORDS_LOST, "flow_records_lost_ringbuf_full")                             \
	X(NOT_IP, "flow_not_ip")                                                           \
	X(MALFORMED, "flow_malformed")                                                     \
	X(KERNEL_DROPS, "kernel_drops")                                                    \
	X(DROP_RECORDS, "drop_records")                                                    \
	X(DROP_RECORDS_LOST, "drop_records_lost_ringbuf_full")                             \
	X(DROP_NO_HEADER, "drops_not_ip")                                       \
	X(OWNER_UPDATES, "socket_owner_updates")                                           \
	X(CGROUP_UPDATE_FAILED, "cgroup_counter_update_failed")

enum vigil_flow_stat {
#define VIGIL_FLOW_STAT_ENUM(id, name) VIGIL_FLOW_STAT_##id,
	VIGIL_FLOW_STATS(VIGIL_FLOW_STAT_ENUM)
#undef VIGIL_FLOW_STAT_ENUM
	VIGIL_FLOW_STAT_MAX,
};
