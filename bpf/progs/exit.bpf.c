// SPDX-License-Identifier: GPL-2.0-only
/* Process exit: one record when the last thread of a thread group exits. */
#include "vigil_bpf/common.bpf.h"
#include "vigil_bpf/decide.bpf.h"
#include "vigil_bpf/emit.bpf.h"
#include "vigil_bpf/extract.bpf.h"
#include "vigil_bpf/mm.bpf.h"

/* Newer kernels pass group_dead as a second argument; reading signal->live works on all. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(vigil_exit, struct task_struct *task)
{
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	struct vigil_exit_record *r;
	struct mm_struct *mm;
	__u64 id;

	if (!decide__group_dead(BPF_CORE_READ(sig, live.counter)))
		return 0;

	r = bpf_ringbuf_reserve(&vigil_events, sizeof(*r), 0);
	if (!r) {
		stats__inc(VIGIL_STAT_EXIT_LOST);
		return 0;
	}
	id = bpf_get_current_pid_tgid();
	emit__hdr(&r->hdr, VIGIL_REC_EXIT, sizeof(*r));
	r->pid = id >> 32;
	r->tid = (__u32)id;
	r->ppid = extract__ppid(task);
	r->exit_code = decide__exit_status(BPF_CORE_READ(sig, flags),
					   BPF_CORE_READ(sig, group_exit_code),
					   BPF_CORE_READ(task, exit_code));
	r->cgroup_id = extract__cgroup_id(task);
	r->proc_start_ns = extract__proc_start_ns(task);
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	r->peak_rss_pages = BPF_CORE_READ(sig, maxrss);
	/* Still attached on kernels whose tracepoint runs before exit_mm() (6.16+); a direct load
	 * through the tracepoint's BTF pointer. */
	mm = task->mm;
	r->rss_pages = mm ? mm__rss_pages(mm) : 0;
	r->flags = mm ? VIGIL_EXIT_HAS_RSS : 0;
	r->pad = 0;
	bpf_ringbuf_submit(r, emit__wakeup_flags());
	stats__inc(VIGIL_STAT_EXIT_EMITTED);
	return 0;
}
