// SPDX-License-Identifier: GPL-2.0-only
/* Process exec: extract the new program's identity, then emit one exec record. */
#include "vigil_bpf/common.bpf.h"
#include "vigil_bpf/decide.bpf.h"
#include "vigil_bpf/emit.bpf.h"
#include "vigil_bpf/extract.bpf.h"
#include "vigil_bpf/path.bpf.h"
#include "vigil_bpf/policy.bpf.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline __u32 exec__append_path(struct vigil_exec_scratch *s, __u32 off,
					       struct dentry *dentry, struct vfsmount *mnt,
					       __u32 trunc_flag, __u32 *flags, __u16 *len_out,
					       enum vigil_stat trunc_stat)
{
	__u32 n = 0;

	extract__path(s, dentry, mnt);
	if (s->walk.status == VIGIL_PATH_TRUNCATED) {
		*flags |= trunc_flag;
		stats__inc(trunc_stat);
	}
	if (s->walk.status == VIGIL_PATH_FAILED) {
		*flags |= VIGIL_EXEC_READ_FAILED;
		stats__inc(VIGIL_STAT_READ_FAILED);
	} else {
		n = emit__append_path(s, off, s->walk.pos);
	}
	*len_out = n;
	return n;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(vigil_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct vigil_exec_scratch *s;
	struct vigil_exec_record *r;
	struct mm_struct *mm;
	struct file *file;
	const char *filename, *interp;
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ugid = bpf_get_current_uid_gid();
	__u32 zero = 0, off = 0, n, flags = 0;

	s = bpf_map_lookup_elem(&vigil_scratch, &zero);
	if (!s) {
		stats__inc(VIGIL_STAT_SCRATCH_MISSING);
		return 0;
	}
	r = &s->rec;
	r->pid = id >> 32;
	r->tid = (__u32)id;
	r->ppid = extract__ppid(task);
	r->uid = (__u32)ugid;
	r->gid = ugid >> 32;
	r->euid = BPF_CORE_READ(task, cred, euid.val);
	r->cgroup_id = extract__cgroup_id(task);
	r->proc_start_ns = extract__proc_start_ns(task);
	r->argc = BPF_CORE_READ(bprm, argc);
	bpf_get_current_comm(r->comm, sizeof(r->comm));

	/* The file the kernel runs: for a script, the interpreter. */
	file = BPF_CORE_READ(bprm, file);
	off += exec__append_path(s, off, BPF_CORE_READ(file, f_path.dentry),
				 BPF_CORE_READ(file, f_path.mnt), VIGIL_EXEC_PATH_TRUNCATED, &flags,
				 &r->path_len, VIGIL_STAT_PATH_TRUNCATED);

	/* Policy, while s->path still holds the binary's path: kills before the program runs. */
	policy__evaluate(s, (__u64)file, r->uid, s->walk.pos, 1);

	/* argv, already copied onto the new program's stack. */
	mm = BPF_CORE_READ(task, mm);
	n = decide__args_len(BPF_CORE_READ(mm, arg_start), BPF_CORE_READ(mm, arg_end), &flags);
	if (flags & VIGIL_EXEC_ARGS_TRUNCATED)
		stats__inc(VIGIL_STAT_ARGS_TRUNCATED);
	if (bpf_probe_read_user(&s->data[off & VIGIL_DATA_MASK], n,
				(void *)BPF_CORE_READ(mm, arg_start)) < 0) {
		flags |= VIGIL_EXEC_READ_FAILED;
		stats__inc(VIGIL_STAT_READ_FAILED);
		n = 0;
	}
	r->args_len = n;
	off += n;

	off += exec__append_path(s, off, BPF_CORE_READ(task, fs, pwd.dentry),
				 BPF_CORE_READ(task, fs, pwd.mnt), VIGIL_EXEC_CWD_TRUNCATED, &flags,
				 &r->cwd_len, VIGIL_STAT_CWD_TRUNCATED);

	/* binfmt_script (and binfmt_misc) replace bprm->interp; it starts equal to filename. */
	filename = BPF_CORE_READ(bprm, filename);
	interp = BPF_CORE_READ(bprm, interp);
	r->filename_len = 0;
	r->interp_len = 0;
	if (interp != filename) {
		flags |= VIGIL_EXEC_INTERP;
		n = emit__append_kstr(s, off, filename, VIGIL_FILENAME_MAX);
		r->filename_len = n;
		off += n;
		n = emit__append_kstr(s, off, interp, VIGIL_INTERP_MAX);
		r->interp_len = n;
		off += n;
	}

	r->flags = flags;
	off &= VIGIL_DATA_MASK;
	emit__hdr(&r->hdr, VIGIL_REC_EXEC, sizeof(*r) + off);
	emit__output(r, sizeof(*r) + off, VIGIL_STAT_EXEC_EMITTED, VIGIL_STAT_EXEC_LOST);
	return 0;
}
