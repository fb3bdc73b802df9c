/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * XDP packet filter: the kernel <-> userspace contract (maps, rule entries, drop records,
 * counters). See README.md "XDP packet filter" for the operator's view.
 *
 * Rule lookup. A policy rule expands into entries, one per (source CIDR x destination CIDR x
 * port range). An entry is indexed by one address: its source CIDR if it has one, else its
 * destination CIDR, else it goes in the source trie as ::/0 (it matches every address). Each
 * LPM trie entry (a prefix P) holds the candidates: every entry indexed at P or at a shorter
 * prefix that contains P, sorted by rank. A packet costs one lookup per trie in use, then a
 * scan of at most VIGIL_XDP_CANDIDATES entries per trie, whatever the number of rules; the
 * first candidate of each list that matches in full is that list's best, and the lower rank
 * of the two wins.
 *
 * Rank (precedence): the entry with the longest prefix wins (the longer of its source and
 * destination prefix lengths, then the shorter one), then the rule written first (policies by
 * name, rules in file order). Entries hold IPv4 addresses as IPv4-mapped IPv6
 * (::ffff:a.b.c.d), and the compiler builds one trie of both families where an IPv4 /n is the
 * prefix /(96 + n). The agent installs it as two tries per direction: IPv6 keys (16 bytes) and
 * IPv4 keys (4 bytes, vigil_xdp_lpm4_key), which a lookup walks faster; the IPv4 trie's /0
 * holds the candidates of the longest shorter prefix that contains all of IPv4.
 *
 * Atomic updates. The tries, the entry array and the interface table of one rule set are inner
 * maps of the 2-slot outer maps below. Userspace builds a new set in the inactive slot, flips
 * vigil_xdp_state.gen in one update, and waits for an RCU grace period before it touches that
 * slot again, so a packet sees either the whole old set or the whole new one.
 */
#pragma once

#ifndef __bpf__
#include <linux/types.h>
#endif

#include "vigil/records.h"

#define VIGIL_XDP_MAX_RULES 16384      /* named rules in force (counter slots) */
#define VIGIL_XDP_MAX_ENTRIES 262144   /* expanded entries of all rules */
#define VIGIL_XDP_CANDIDATES 32        /* entries that may cover one address, per trie */
#define VIGIL_XDP_MAX_VLANS 2          /* 802.1Q / 802.1ad tags parsed (QinQ) */
#define VIGIL_XDP_MAX_V6_EXT 8         /* IPv6 extension headers walked */
#define VIGIL_XDP_MAX_SCOPES 64        /* distinct interface lists among XDP policies */
#define VIGIL_XDP_NAME_LEN 64
#define VIGIL_XDP_SAMPLE_WINDOW_NS 1000000000ULL

/* vigil_xdp_entry.action */
enum vigil_xdp_action {
	VIGIL_XDP_ACT_PASS = 0,
	VIGIL_XDP_ACT_DROP = 1,
};

/* vigil_xdp_entry.flags */
enum vigil_xdp_entry_flags {
	VIGIL_XDP_F_AUDIT = 1 << 0,     /* count and report, never drop */
	VIGIL_XDP_F_PORTS = 1 << 1,     /* port_lo..port_hi constrains the destination port */
	VIGIL_XDP_F_RATELIMIT = 1 << 2, /* pass up to the rate, then apply action */
	VIGIL_XDP_F_V4 = 1 << 3,        /* only IPv4 packets (the rule named an IPv4 CIDR) */
	VIGIL_XDP_F_V6 = 1 << 4,        /* only IPv6 packets */
};

/* LPM trie key: the address as IPv6 (IPv4-mapped for IPv4). */
struct vigil_xdp_lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_xdp_lpm_key) == 20, "vigil_xdp_lpm_key ABI");

/* LPM trie key of the IPv4 tries. */
struct vigil_xdp_lpm4_key {
	__u32 prefixlen;
	__u8 addr[4];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_xdp_lpm4_key) == 8, "vigil_xdp_lpm4_key ABI");

/* LPM trie value: indexes into the entry array, best rank first. */
struct vigil_xdp_candidates {
	__u32 count;
	__u32 entry[VIGIL_XDP_CANDIDATES];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_xdp_candidates) == 4 + 4 * VIGIL_XDP_CANDIDATES,
		 "vigil_xdp_candidates ABI");

/* One expanded rule. Addresses are matched as (addr & mask) == net; a zero mask matches all. */
struct vigil_xdp_entry {
	__u8 src_net[16];
	__u8 src_mask[16];
	__u8 dst_net[16];
	__u8 dst_mask[16];
	__u32 slot;      /* the named rule: counters and drop records */
	__u32 rank;      /* lower wins */
	__u64 scopes;    /* interface lists the rule applies on (bits); never 0 */
	__u64 rate_interval_ns; /* rate limit: 1e9 / packets per second */
	__u64 rate_burst_ns;    /* rate limit: (burst - 1) * interval */
	__u16 port_lo;
	__u16 port_hi;
	__u8 proto; /* IPPROTO_*; 0 matches any */
	__u8 action; /* enum vigil_xdp_action */
	__u8 flags;  /* enum vigil_xdp_entry_flags */
	__u8 rate_prefix_v4; /* rate limit key: source address masked to this length */
	__u8 rate_prefix_v6;
	__u8 pad[7];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_xdp_entry) == 112, "vigil_xdp_entry ABI");

/* vigil_xdp_state[0]: which slot of the outer maps is in force. The program reads gen and
 * ACTIVE only; the other flags describe the set for userspace (which parts a set has, the
 * program learns from its inner maps being there, so a packet cannot mix two sets' flags). */
enum vigil_xdp_state_flags {
	VIGIL_XDP_S_ACTIVE = 1 << 0, /* there are rules; 0: pass everything */
	VIGIL_XDP_S_SRC = 1 << 1,    /* the source trie has entries */
	VIGIL_XDP_S_DST = 1 << 2,    /* the destination trie has entries */
	VIGIL_XDP_S_SCOPED = 1 << 3, /* some rule is limited to some interfaces */
};
struct vigil_xdp_state {
	__u32 gen;   /* 0 or 1 */
	__u32 flags; /* enum vigil_xdp_state_flags */
	__u32 sample_per_cpu; /* drop records per rule, per CPU, per second */
	__u32 abi;   /* VIGIL_XDP_ABI_VERSION of the agent that wrote this */
};

/* Per-CPU counters of a rule slot (vigil_xdp_counters[slot]). Packets and bytes the rule
 * decided; limited_* are packets over a rate limit. The sample fields pace drop records. */
struct vigil_xdp_counter {
	__u64 packets;
	__u64 bytes;
	__u64 limited_packets;
	__u64 limited_bytes;
	__u64 sample_window_ns;
	__u64 sampled;    /* records written in the current window */
	__u64 suppressed; /* records not written since the last one (sampling) */
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_xdp_counter) == 56, "vigil_xdp_counter ABI");

/* Rate-limit state: one bucket per (rule slot, source prefix), GCRA ("theoretical arrival
 * time"): a packet conforms when max(tat, now) - now <= burst; then tat = max(tat, now) +
 * interval. Updated with compare-and-swap (LRU hash maps cannot hold a bpf_spin_lock). */
struct vigil_xdp_bucket_key {
	__u32 slot;
	__u8 addr[16]; /* masked to the rule's per-source prefix */
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_xdp_bucket_key) == 20, "vigil_xdp_bucket_key ABI");
struct vigil_xdp_bucket {
	__u64 tat_ns;
};

/* vigil_xdp_names[slot]: which rule owns a slot, so that a restarted agent keeps counters. */
struct vigil_xdp_name {
	char policy[VIGIL_XDP_NAME_LEN];
	char rule[VIGIL_XDP_NAME_LEN];
};

/* Why a drop record was written. */
enum vigil_xdp_verdict {
	VIGIL_XDP_V_DROPPED = 1,     /* an enforce-mode drop rule */
	VIGIL_XDP_V_AUDIT = 2,       /* an audit-mode drop rule (the packet passed) */
	VIGIL_XDP_V_RATE_DROPPED = 3, /* over a rate limit, enforce mode */
	VIGIL_XDP_V_RATE_AUDIT = 4,   /* over a rate limit, audit mode (the packet passed) */
};

/* What the parser could read of a packet (vigil_xdp_drop_record.pkt_flags). */
enum vigil_xdp_pkt_flags {
	VIGIL_XDP_P_FRAGMENT = 1 << 0, /* a non-first fragment: no ports */
	VIGIL_XDP_P_NO_L4 = 1 << 1,    /* L4 header missing, truncated or past the walk depth */
	VIGIL_XDP_P_VLAN = 1 << 2,
	VIGIL_XDP_P_EXT_TOO_DEEP = 1 << 3, /* IPv6 extension headers past the walk depth */
};

#define VIGIL_XDP_ABI_VERSION 2

/* A sampled drop (or audit) record, in the vigil_xdp_events ring buffer. */
struct vigil_xdp_drop_record {
	struct vigil_record_hdr hdr; /* type VIGIL_REC_XDP_DROP */
	__u32 slot;
	__u32 ifindex;
	__u8 src[16]; /* IPv4-mapped for IPv4 */
	__u8 dst[16];
	__u16 src_port; /* host byte order; 0 when unknown */
	__u16 dst_port;
	__u8 family;    /* 4 or 6 */
	__u8 proto;
	__u8 verdict;   /* enum vigil_xdp_verdict */
	__u8 pkt_flags; /* enum vigil_xdp_pkt_flags */
	__u32 pkt_len;
	__u32 suppressed; /* records this rule did not write on this CPU since the last one */
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_xdp_drop_record) == 72, "vigil_xdp_drop_record ABI");

/* Per-CPU data path counters (vigil_xdp_stats), indexed by enum vigil_xdp_stat. */
#define VIGIL_XDP_STATS(X)                                                          \
	X(NOT_IP, "xdp_not_ip")                                                      \
	X(MALFORMED, "xdp_malformed")                                                \
	X(VLAN_TOO_DEEP, "xdp_vlan_too_deep")                                        \
	X(EXT_TOO_DEEP, "xdp_ipv6_ext_too_deep")                                     \
	X(FRAGMENTS, "xdp_fragments")                                                \
	X(NO_L4, "xdp_l4_missing")                                                   \
	X(RECORDS, "xdp_records_written")                                            \
	X(RECORDS_LOST, "xdp_records_lost_ringbuf_full")                             \
	X(RECORDS_SUPPRESSED, "xdp_records_not_sampled")                             \
	X(BUCKETS_MISSING, "xdp_rate_bucket_insert_failed")

enum vigil_xdp_stat {
#define VIGIL_XDP_STAT_ENUM(id, name) VIGIL_XDP_STAT_##id,
	VIGIL_XDP_STATS(VIGIL_XDP_STAT_ENUM)
#undef VIGIL_XDP_STAT_ENUM
	VIGIL_XDP_STAT_MAX,
};
