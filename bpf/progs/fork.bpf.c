// SPDX-License-Identifier: GPL-2.0-only
/* New processes, so that lineage holds for children that never exec. */
#include "vigil_bpf/common.bpf.h"
#include "vigil_bpf/decide.bpf.h"
#include "vigil_bpf/emit.bpf.h"
#include "vigil_bpf/extract.bpf.h"

SEC("tp_btf/sched_process_fork")
int BPF_PROG(vigil_fork, struct task_struct *parent, struct task_struct *child)
{
	struct vigil_fork_record *r;
	__u32 pid = BPF_CORE_READ(child, pid);

	if (!decide__is_new_process(pid, BPF_CORE_READ(child, tgid)))
		return 0;

	r = bpf_ringbuf_reserve(&vigil_events, sizeof(*r), 0);
	if (!r) {
		stats__inc(VIGIL_STAT_FORK_LOST);
		return 0;
	}
	emit__hdr(&r->hdr, VIGIL_REC_FORK, sizeof(*r));
	r->pid = pid;
	r->ppid = BPF_CORE_READ(parent, tgid);
	r->cgroup_id = extract__cgroup_id(child);
	r->proc_start_ns = BPF_CORE_READ(child, start_time);
	BPF_CORE_READ_STR_INTO(&r->comm, child, comm);
	bpf_ringbuf_submit(r, emit__wakeup_flags());
	stats__inc(VIGIL_STAT_FORK_EMITTED);
	return 0;
}
