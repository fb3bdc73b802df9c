/* SPDX-License-Identifier: GPL-2.0-only */
/* Reading an mm's RSS counters (the ones behind /proc/PID/status) with CO-RE. */
#pragma once

#include "vigil_bpf/common.bpf.h"

/* enum mm_counter_type, fixed since 2.6: file, anon, swap entries, shmem. */
#define VIGIL_MM_FILEPAGES 0
#define VIGIL_MM_ANONPAGES 1
#define VIGIL_MM_SWAPENTS 2
#define VIGIL_MM_SHMEMPAGES 3

/* Kernels before 6.2 kept the counters as atomics in struct mm_rss_stat. */
struct mm_rss_stat___old {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));
struct mm_struct___old {
	struct mm_rss_stat___old rss_stat;
} __attribute__((preserve_access_index));

/* True when this kernel keeps the counters as atomics (exact, before 6.2). */
#define mm__counters_exact() bpf_core_type_exists(struct mm_rss_stat___old)

/* One counter, as the kernel's global count: what get_mm_counter() returns. Each CPU may hold
 * up to a batch of pages (percpu_counter_batch, at least 32) not yet folded into it, which
 * /proc/PID/status adds on kernels that sum the per-CPU slots (6.16+). The per-CPU slots are
 * out of reach here: the verifier does not take the counters read through task->mm for a
 * per-CPU pointer, and the kernel's offset table needs data symbols in kallsyms.
 * `mm` must be a BTF pointer (iterator or tp_btf context): the new layout is read by direct
 * loads, with no helper call (helper calls are what a snapshot of 10,000 processes spends its
 * time on). */
static __always_inline __u64 mm__counter(struct mm_struct *mm, int i)
{
	if (mm__counters_exact()) {
		struct mm_struct___old *old = (void *)mm;

		return BPF_CORE_READ(old, rss_stat.count[i].counter);
	}
	s64 count = mm->rss_stat[i].count;

	return count > 0 ? count : 0;
}

/* The resident pages, as VmRSS counts them: file + anon + shmem. */
static __always_inline __u64 mm__rss_pages(struct mm_struct *mm)
{
	return mm__counter(mm, VIGIL_MM_FILEPAGES) + mm__counter(mm, VIGIL_MM_ANONPAGES) +
	       mm__counter(mm, VIGIL_MM_SHMEMPAGES);
}
