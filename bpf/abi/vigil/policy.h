/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Exec policy maps: the kernel <-> userspace contract.
 *
 * Every exec rule owns a slot (a bit). For each thing an exec can be matched on there is a map
 * from a value to the bitmap of rules that accept it, and an "any" bitmap of the rules that do
 * not look at that thing. An exec matches the rules in the AND, over all things, of
 * (bitmap of its value | any). Every key carries a generation: userspace fills the inactive
 * generation, then flips vigil_policy_state.gen in one update, so an exec sees the whole old
 * rule set or the whole new one.
 */
#pragma once

#ifndef __bpf__
#include <linux/types.h>
#endif

#define VIGIL_MAX_EXEC_RULES 4096
#define VIGIL_RULE_WORDS (VIGIL_MAX_EXEC_RULES / 64)
#define VIGIL_PREFIX_MAX 252   /* bytes of a pathPrefixes entry (LPM keys hold 256 bytes) */
#define VIGIL_CGROUP_LEVELS 16 /* cgroup levels looked at, from the root */
#define VIGIL_POLICY_MAX_KEYS 65536

struct vigil_rule_bitmap {
	__u64 w[VIGIL_RULE_WORDS];
};

/* A file by identity: the kernel's superblock dev_t (MAJOR << 20 | MINOR) and inode number. */
struct vigil_file_key {
	__u32 gen;
	__u32 dev;
	__u64 ino;
};

struct vigil_uid_key {
	__u32 gen;
	__u32 uid;
};

struct vigil_cgroup_key {
	__u32 gen;
	__u32 pad;
	__u64 id;
};

/* LPM trie key: prefixlen counts bits of data[], which is the generation then the path. */
struct vigil_prefix_key {
	__u32 prefixlen;
	__u8 data[4 + VIGIL_PREFIX_MAX];
};

/* One generation's rule set, vigil_rulesets[gen]. */
struct vigil_ruleset {
	__u32 nwords; /* words of the bitmaps in use: slots < 64 * nwords */
	__u32 pad;
	struct vigil_rule_bitmap any_binary;
	struct vigil_rule_bitmap any_prefix;
	struct vigil_rule_bitmap any_parent;
	struct vigil_rule_bitmap any_uid;
	struct vigil_rule_bitmap any_cgroup;
	struct vigil_rule_bitmap kill; /* rules whose action is kill in enforce mode */
};

struct vigil_policy_state {
	__u32 gen;     /* the generation execs are matched against */
	__u32 active;  /* 0: no exec rules at all, skip matching */
};

/* What an exec record says about policy. */
enum vigil_policy_verdict {
	VIGIL_VERDICT_NONE = 0,
	VIGIL_VERDICT_AUDIT = 1,
	VIGIL_VERDICT_KILL = 2,
};
