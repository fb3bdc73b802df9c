// SPDX-License-Identifier: GPL-2.0-only
/* Memory accounting as kernel state: a task iterator that the agent reads on demand (nothing
 * runs per page fault), and the OOM killer's victims from oom/mark_victim. */
#include "vigil_bpf/common.bpf.h"
#include "vigil_bpf/extract.bpf.h"
#include "vigil_bpf/mm.bpf.h"

#include <vigil/mem.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_MEM_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} vigil_mem_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} vigil_mem_ring SEC(".maps");

static __always_inline void mem__inc(enum vigil_mem_stat id)
{
	__u32 key = id;
	__u64 *v = bpf_map_lookup_elem(&vigil_mem_stats, &key);

	if (v)
		*v += 1;
}

SEC("iter/task")
int vigil_mem_iter(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct vigil_mem_task r = {};
	struct mm_struct *mm;

	if (ctx->meta->seq_num == 0) {
		struct vigil_mem_iter_hdr h = {VIGIL_MEM_ABI_VERSION, sizeof(r)};

		bpf_seq_write(seq, &h, sizeof(h));
	}
	if (!task)
		return 0;
	/* Threads share their leader's mm: count it once. Kernel threads have none. */
	if (task->pid != task->tgid)
		return 0;
	mm = task->mm;
	if (!mm || (task->flags & 0x00200000 /* PF_KTHREAD */))
		return 0;

	/* Direct loads through the task's BTF pointers throughout: each BPF_CORE_READ hop would be
	 * a bpf_probe_read_kernel call. */
	r.pid = task->tgid;
	r.ppid = task->real_parent->tgid;
	r.cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	r.proc_start_ns = task->start_time;
	r.file_pages = mm__counter(mm, VIGIL_MM_FILEPAGES);
	r.anon_pages = mm__counter(mm, VIGIL_MM_ANONPAGES);
	r.swap_entries = mm__counter(mm, VIGIL_MM_SWAPENTS);
	r.shmem_pages = mm__counter(mm, VIGIL_MM_SHMEMPAGES);
	r.hiwater_pages = mm->hiwater_rss;
	r.threads = task->signal->nr_threads;
	r.flags = mm__counters_exact() ? VIGIL_MEM_EXACT : 0;
	for (int i = 0; i < VIGIL_COMM_LEN; i++)
		r.comm[i] = task->comm[i];
	if (bpf_seq_write(seq, &r, sizeof(r)) != 0) {
		mem__inc(VIGIL_MEM_STAT_WRITE_FAILED);
		return 0;
	}
	return 0;
}

/* The OOM killer picked `task` (its memory is still mapped: the reaper has not run yet). */
SEC("tp_btf/mark_victim")
int BPF_PROG(vigil_oom_victim, struct task_struct *task, uid_t uid)
{
	struct vigil_oom_record *r;
	/* A direct load through the tracepoint's BTF pointer, so that the counters are read as the
	 * iterator reads them (never negative, either layout). */
	struct mm_struct *mm = task->mm;

	mem__inc(VIGIL_MEM_STAT_OOM_SEEN);
	r = bpf_ringbuf_reserve(&vigil_mem_ring, sizeof(*r), 0);
	if (!r) {
		mem__inc(VIGIL_MEM_STAT_OOM_LOST);
		return 0;
	}
	r->hdr.type = VIGIL_REC_OOM_KILL;
	r->hdr.version = VIGIL_ABI_VERSION;
	r->hdr.size = sizeof(*r);
	r->hdr.ktime_ns = bpf_ktime_get_ns();
	r->pid = BPF_CORE_READ(task, tgid);
	r->uid = uid;
	r->cgroup_id = extract__cgroup_id(task);
	r->proc_start_ns = extract__proc_start_ns(task);
	r->anon_pages = mm ? mm__counter(mm, VIGIL_MM_ANONPAGES) : 0;
	r->file_pages = mm ? mm__counter(mm, VIGIL_MM_FILEPAGES) : 0;
	r->shmem_pages = mm ? mm__counter(mm, VIGIL_MM_SHMEMPAGES) : 0;
	r->total_vm_pages = mm ? mm->total_vm : 0;
	r->oom_score_adj = BPF_CORE_READ(task, signal, oom_score_adj);
	r->pad = 0;
	BPF_CORE_READ_STR_INTO(&r->comm, task, comm);
	r->memcg_id = 0;
	if (bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id)) {
		int memcg = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);

		r->memcg_id = BPF_CORE_READ(task, cgroups, subsys[memcg], cgroup, kn, id);
	}
	bpf_ringbuf_submit(r, 0);
	return 0;
}
