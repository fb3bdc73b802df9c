/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Maps shared by every program of the vigil object. Declared __weak so that each .bpf.c can
 * include this header and `bpftool gen object` merges them into one map each.
 */
#pragma once

#include "vigil_bpf/common.bpf.h"
#include <vigil/policy.h>

/* Records to userspace. The agent sizes it before load (--ring-buffer-size). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} vigil_events SEC(".maps") __weak;

/*
 * Wake the reader only once this many bytes wait in the ring buffer; the agent drains it on a
 * timer as well, so quiet periods still deliver promptly. 0 keeps the kernel's default of
 * waking a waiting reader for every record, which costs a context switch per event.
 */
const volatile __u64 cfg_wakeup_bytes __weak = 0;

/* enum vigil_stat -> per-CPU counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} vigil_stats SEC(".maps") __weak;

/*
 * Per-CPU room (a per-CPU value is limited to 32 KiB) to build a variable-size exec record before bpf_ringbuf_output() copies it
 * (bpf_ringbuf_reserve() needs a constant size). data[] is larger than any record so that
 * offsets masked with VIGIL_DATA_MASK plus one bounded copy always stay inside it.
 */
#define VIGIL_DATA_MASK (16384 - 1)
#define VIGIL_PATH_MASK (VIGIL_PATH_MAX - 1)

enum vigil_path_status {
	VIGIL_PATH_OK = 0,
	VIGIL_PATH_TRUNCATED = 1,
	VIGIL_PATH_FAILED = 2,
};

/* State of a path walk (see path.bpf.h). Pointers are kept as plain numbers. */
struct vigil_path_walk {
	__u64 dentry;
	__u64 mnt; /* struct mount * */
	__u32 pos; /* the path is path[pos, VIGIL_PATH_MAX) */
	__u32 status; /* enum vigil_path_status */
};

struct vigil_exec_scratch {
	struct vigil_path_walk walk;
	struct vigil_exec_record rec;
	char data[VIGIL_DATA_MASK + 1 + VIGIL_PATH_MAX];
	/* A path is assembled here backwards, ending at path[VIGIL_PATH_MAX]. */
	char path[2 * VIGIL_PATH_MAX];
	/* Policy matching (policy.bpf.h): the path prefix lookup key, with slack for masked copies. */
	struct vigil_prefix_key pkey;
	__u8 pkey_slack[VIGIL_PREFIX_MAX];
	struct vigil_rule_bitmap acc; /* rules still matching */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_exec_scratch);
} vigil_scratch SEC(".maps") __weak;

_Static_assert(VIGIL_EXEC_DATA_MAX <= VIGIL_DATA_MASK + 1, "exec data must fit the mask");
