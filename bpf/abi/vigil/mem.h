/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Memory accounting: what the task iterator writes per process, and the OOM-kill record.
 * Compiled by clang -target bpf (after vmlinux.h) and by the agent's C++. A change here is an
 * ABI change: VIGIL_MEM_ABI_VERSION goes up with it.
 */
#pragma once

#include "vigil/records.h"

#define VIGIL_MEM_ABI_VERSION 1

/* One process (thread-group leader with an mm) as the iterator reads it. Counters are in
 * pages, as the kernel keeps them: exactly what /proc/PID/status reports (RssFile, RssAnon,
 * RssShmem, VmSwap; VmHWM is max(hiwater_rss, rss)). */
struct vigil_mem_task {
	__u32 pid;
	__u32 ppid;
	__u64 cgroup_id;
	__u64 proc_start_ns;
	__u64 file_pages;
	__u64 anon_pages;
	__u64 swap_entries;
	__u64 shmem_pages;
	__u64 hiwater_pages; /* mm->hiwater_rss: the peak before the current RSS */
	__u32 threads;       /* signal->nr_threads */
	__u32 flags;         /* enum vigil_mem_task_flags */
	char comm[VIGIL_COMM_LEN];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_mem_task) == 88, "vigil_mem_task ABI");

enum vigil_mem_task_flags {
	/* The counters are exact (kernels before 6.2 keep them as atomics); otherwise they are
	 * the global counts of per-CPU counters, which lag by at most a batch per CPU. */
	VIGIL_MEM_EXACT = 1 << 0,
};

/* The iterator's output starts with this header, then one vigil_mem_task per process. */
struct vigil_mem_iter_hdr {
	__u32 version; /* VIGIL_MEM_ABI_VERSION */
	__u32 record_size;
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_mem_iter_hdr) == 8, "vigil_mem_iter_hdr ABI");

/* The OOM killer chose a victim (oom/mark_victim), in the vigil_mem_ring buffer. Pages. */
struct vigil_oom_record {
	struct vigil_record_hdr hdr;
	__u32 pid;
	__u32 uid;
	__u64 cgroup_id;
	__u64 proc_start_ns;
	__u64 anon_pages;
	__u64 file_pages;
	__u64 shmem_pages;
	__u64 total_vm_pages;
	__s32 oom_score_adj;
	__u32 pad;
	char comm[VIGIL_COMM_LEN];
	/* The victim's memory cgroup: its id in the hierarchy that holds the memory controller
	 * (cgroup v1's on a hybrid host, where cgroup_id is the v2 one); 0 without memcg. */
	__u64 memcg_id;
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_oom_record) == 104, "vigil_oom_record ABI");

/* Counters the memory programs keep (vigil_mem_stats, per CPU). */
enum vigil_mem_stat {
	VIGIL_MEM_STAT_WRITE_FAILED,   /* bpf_seq_write failed (the reader's buffer) */
	VIGIL_MEM_STAT_OOM_SEEN,
	VIGIL_MEM_STAT_OOM_LOST,       /* ring buffer full */
	VIGIL_MEM_STAT_COUNT,
};
