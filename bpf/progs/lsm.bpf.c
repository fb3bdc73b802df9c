// SPDX-License-Identifier: GPL-2.0-only
/*
 * Exec policy through BPF-LSM, where the kernel runs BPF-LSM programs: a denied exec fails with
 * EPERM instead of the process being killed after it. The agent loads this program only when
 * its start-up probe found BPF-LSM usable; otherwise the tracepoint kill in exec.bpf.c is the
 * mechanism. bprm_check_security runs for the script and again for its interpreter.
 */
#include "vigil_bpf/common.bpf.h"
#include "vigil_bpf/emit.bpf.h"
#include "vigil_bpf/extract.bpf.h"
#include "vigil_bpf/path.bpf.h"
#include "vigil_bpf/policy.bpf.h"

#define VIGIL_EPERM 1

SEC("lsm/bprm_check_security")
int BPF_PROG(vigil_lsm_exec, struct linux_binprm *bprm, int ret)
{
	struct vigil_exec_scratch *s;
	struct vigil_denied_record *d;
	struct file *file;
	__u32 zero = 0, len;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 uid = (__u32)bpf_get_current_uid_gid();

	if (ret)
		return ret;
	s = bpf_map_lookup_elem(&vigil_scratch, &zero);
	if (!s)
		return 0;
	file = BPF_CORE_READ(bprm, file);
	extract__path(s, BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt));
	if (policy__evaluate(s, (__u64)file, uid, s->walk.pos, 0) != VIGIL_VERDICT_KILL)
		return 0;

	/* Report it: the exec never happens, so no exec record will. */
	d = (struct vigil_denied_record *)s->data;
	__builtin_memset(d, 0, sizeof(*d));
	d->pid = id >> 32;
	d->tid = (__u32)id;
	d->ppid = extract__ppid(bpf_get_current_task_btf());
	d->uid = uid;
	d->cgroup_id = bpf_get_current_cgroup_id();
	d->rule_slot = s->rec.rule_slot;
	d->rule_gen = s->rec.rule_gen;
	bpf_get_current_comm(d->comm, sizeof(d->comm));
	len = emit__append_path(s, sizeof(*d), s->walk.pos);
	d->path_len = len;
	len = (sizeof(*d) + len) & VIGIL_DATA_MASK;
	emit__hdr(&d->hdr, VIGIL_REC_DENIED, len);
	emit__output(d, len, VIGIL_STAT_EXEC_EMITTED, VIGIL_STAT_EXEC_LOST);
	return -VIGIL_EPERM;
}
