/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Exec policy: maps (see abi/vigil/policy.h) and the decision taken at exec. Userspace
 * compiles rules into these maps; the exec program only looks values up and combines bitmaps.
 */
#pragma once

#include "vigil_bpf/maps.bpf.h"
#include "vigil_bpf/stats.bpf.h"
#include <vigil/policy.h>

#define VIGIL_SIGKILL 9

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_policy_state);
} vigil_policy_state SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct vigil_ruleset);
} vigil_rulesets SEC(".maps") __weak;

#define VIGIL_RULE_HASH(name, key_type)                                                        \
	struct {                                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                                               \
		__uint(max_entries, VIGIL_POLICY_MAX_KEYS);                                    \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                          \
		__type(key, key_type);                                                         \
		__type(value, struct vigil_rule_bitmap);                                       \
	} name SEC(".maps") __weak

VIGIL_RULE_HASH(vigil_rule_binaries, struct vigil_file_key);
VIGIL_RULE_HASH(vigil_rule_parents, struct vigil_file_key);
VIGIL_RULE_HASH(vigil_rule_uids, struct vigil_uid_key);
VIGIL_RULE_HASH(vigil_rule_cgroups, struct vigil_cgroup_key);

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, VIGIL_POLICY_MAX_KEYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vigil_prefix_key);
	__type(value, struct vigil_rule_bitmap);
} vigil_rule_prefixes SEC(".maps") __weak;

/* Execs each rule slot decided, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_MAX_EXEC_RULES);
	__type(key, __u32);
	__type(value, __u64);
} vigil_rule_hits SEC(".maps") __weak;

/*
 * Updating a map-in-map makes the kernel wait for an RCU grace period, after which no program
 * that read the previous generation can still be running: userspace updates this after each
 * flip, before it deletes the old generation's entries.
 */
struct vigil_barrier_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct vigil_barrier_inner);
} vigil_policy_barrier SEC(".maps") __weak;

/* Index of the lowest set bit of a non-zero word (BPF has no count-trailing-zeros). */
static __always_inline __u32 policy__lowest_bit(__u64 w)
{
	__u32 n = 0;

	if (!(w & 0xffffffffULL)) {
		n += 32;
		w >>= 32;
	}
	if (!(w & 0xffffULL)) {
		n += 16;
		w >>= 16;
	}
	if (!(w & 0xffULL)) {
		n += 8;
		w >>= 8;
	}
	if (!(w & 0xfULL)) {
		n += 4;
		w >>= 4;
	}
	if (!(w & 0x3ULL)) {
		n += 2;
		w >>= 2;
	}
	if (!(w & 0x1ULL))
		n += 1;
	return n;
}

/*
 * acc &= (b | any) over the words in use; with first, acc = b | any. One loop per thing matched
 * on, each with a pointer that is known to be set or not: the verifier then explores each
 * loop twice at most instead of every combination of missing bitmaps. The word count is read
 * from the map at each test, so that no bound learnt on it outlives a loop (it would make
 * every exit from every loop a distinct state).
 */
static __always_inline void policy__and(struct vigil_rule_bitmap *acc, struct vigil_rule_bitmap *b,
					struct vigil_ruleset *rs, struct vigil_rule_bitmap *any,
					bool first)
{
	__u32 w;

	if (b) {
		for (w = 0; w < VIGIL_RULE_WORDS; w++) {
			if (w >= rs->nwords)
				break;
			acc->w[w] = (first ? ~0ULL : acc->w[w]) & (b->w[w] | any->w[w]);
		}
	} else {
		for (w = 0; w < VIGIL_RULE_WORDS; w++) {
			if (w >= rs->nwords)
				break;
			acc->w[w] = (first ? ~0ULL : acc->w[w]) & any->w[w];
		}
	}
}

/*
 * A global function: the verifier checks it once, on its own, and the exec program continues
 * from one state whatever the matching found. (Inlined, every outcome multiplied the states of
 * everything after it.) The file is passed as a number and read with CO-RE; the task is the
 * current one, the program that is starting.
 *
 * With send_kill, a kill verdict sends SIGKILL to the current task (the tracepoint path); the
 * LSM path denies the exec instead.
 *
 * Matches the exec of `file` (whose resolved path is s->path[path_start, VIGIL_PATH_MAX))
 * against the active rule set and fills rec->verdict/rule_slot/rule_gen. A kill rule wins over
 * an audit rule; among rules of one kind the lowest slot wins.
 */
int policy__evaluate(struct vigil_exec_scratch *s, __u64 file_addr, __u32 uid, __u32 path_start,
		     __u32 send_kill);
