/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The kernel <-> userspace contract for records in the vigil_events ring buffer.
 *
 * Compiled by clang -target bpf (after vmlinux.h) and by the agent's C++. Fixed-width types,
 * explicit padding, and a size assertion per struct: a change here is an ABI change, and
 * VIGIL_ABI_VERSION goes up with it.
 */
#pragma once

#ifndef __bpf__
#include <linux/types.h>
#endif

#ifdef __cplusplus
#define VIGIL_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define VIGIL_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define VIGIL_ABI_VERSION 4

/* Kernel-side limits. Userspace documents these; see docs in README.md. */
#define VIGIL_PATH_MAX 4096   /* resolved binary path and cwd, bytes */
#define VIGIL_ARGS_MAX 4096   /* argv, NUL-separated, bytes in all */
#define VIGIL_FILENAME_MAX 2048 /* the name passed to execve, kept for scripts only */
#define VIGIL_INTERP_MAX 256  /* the "#!" line is at most BINPRM_BUF_SIZE */
#define VIGIL_PATH_DEPTH 64   /* path components walked before giving up */
#define VIGIL_COMM_LEN 16

enum vigil_record_type {
	VIGIL_REC_EXEC = 1,
	VIGIL_REC_EXIT = 2,
	VIGIL_REC_FORK = 3,
	/* An exec denied with EPERM by the BPF-LSM program (where the kernel runs BPF-LSM). */
	VIGIL_REC_DENIED = 4,
	/* A sampled XDP drop (vigil_xdp_drop_record in xdp.h), in the vigil_xdp_ring buffer. */
	VIGIL_REC_XDP_DROP = 5,
	/* A new network flow (vigil_flow_new_record in flow.h), in the vigil_flow_ring buffer. */
	VIGIL_REC_FLOW_NEW = 6,
	/* A sampled packet the kernel dropped (vigil_drop_record in flow.h), same buffer. */
	VIGIL_REC_KERNEL_DROP = 7,
	/* The OOM killer chose a victim (vigil_oom_record in mem.h), in the vigil_mem_ring. */
	VIGIL_REC_OOM_KILL = 8,
	VIGIL_REC_TYPES, /* one past the last */
};

/* Flags on an exec record. */
enum vigil_exec_flags {
	VIGIL_EXEC_ARGS_TRUNCATED = 1 << 0,
	VIGIL_EXEC_PATH_TRUNCATED = 1 << 1,
	VIGIL_EXEC_CWD_TRUNCATED = 1 << 2,
	/* The kernel ran an interpreter (a "#!" script or binfmt_misc): filename and interp
	 * follow the other strings. */
	VIGIL_EXEC_INTERP = 1 << 3,
	/* An argv or path read failed in the kernel; the field is empty or partial. */
	VIGIL_EXEC_READ_FAILED = 1 << 4,
};

/* Every record starts with this header. */
struct vigil_record_hdr {
	__u16 type;     /* enum vigil_record_type */
	__u16 version;  /* VIGIL_ABI_VERSION */
	__u32 size;     /* whole record, header included */
	__u64 ktime_ns; /* bpf_ktime_get_ns() when the kernel produced it (CLOCK_MONOTONIC) */
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_record_hdr) == 16, "vigil_record_hdr ABI");

/*
 * An exec. The fixed part is followed by, in this order and without separators:
 *   path[path_len]     absolute path of the executed file (no NUL)
 *   args[args_len]     argv, each argument NUL-terminated (the last may be cut when truncated)
 *   cwd[cwd_len]       absolute cwd (no NUL)
 *   filename[filename_len]  as passed to execve, only with VIGIL_EXEC_INTERP (no NUL)
 *   interp[interp_len]      interpreter named by the "#!" line, only with VIGIL_EXEC_INTERP
 */
struct vigil_exec_record {
	struct vigil_record_hdr hdr;
	__u32 pid;  /* thread-group id after exec */
	__u32 tid;
	__u32 ppid; /* real parent's thread-group id */
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u64 cgroup_id;     /* cgroup v2 id (the kernfs inode of the cgroup directory) */
	__u64 proc_start_ns; /* group leader's start_time (fork), CLOCK_MONOTONIC */
	__u32 flags;         /* enum vigil_exec_flags */
	__u16 path_len;
	__u16 args_len;
	__u16 cwd_len;
	__u16 filename_len;
	__u16 interp_len;
	__u16 argc;
	char comm[VIGIL_COMM_LEN];
	/* Policy: enum vigil_policy_verdict, and the rule slot and generation that decided it. */
	__u32 verdict;
	__u32 rule_slot;
	__u32 rule_gen;
	__u32 pad;
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_exec_record) == 104, "vigil_exec_record ABI");

/* A process (whole thread group) exit. */
struct vigil_exit_record {
	struct vigil_record_hdr hdr;
	__u32 pid;
	__u32 tid; /* the last thread to exit */
	__u32 ppid;
	/* Wait-status form: (code << 8) | signal, 0x80 set when a core was dumped. */
	__u32 exit_code;
	__u64 cgroup_id;
	__u64 proc_start_ns;
	char comm[VIGIL_COMM_LEN];
	/* The process's peak RSS (signal->maxrss: the high-water mark of its mm, set as the last
	 * thread exits), in pages. */
	__u64 peak_rss_pages;
	/* Its RSS as it exits (file + anon + shmem pages, as VmRSS), when VIGIL_EXIT_HAS_RSS: the
	 * tracepoint runs before the mm is released since Linux 6.16, after it before. */
	__u64 rss_pages;
	__u32 flags; /* enum vigil_exit_flags */
	__u32 pad;
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_exit_record) == 88, "vigil_exit_record ABI");

enum vigil_exit_flags {
	VIGIL_EXIT_HAS_RSS = 1 << 0,
};

/* A new process (not a thread) created by fork/clone; keeps lineage for processes that
 * never exec. */
struct vigil_fork_record {
	struct vigil_record_hdr hdr;
	__u32 pid;  /* the child's thread-group id */
	__u32 ppid; /* the forking process */
	__u64 cgroup_id;
	__u64 proc_start_ns; /* the child's start_time */
	char comm[VIGIL_COMM_LEN];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_fork_record) == 56, "vigil_fork_record ABI");

/* An exec denied by policy in bprm_check_security; the process that tried goes on running
 * its old program. Followed by path[path_len], the denied file (no NUL). */
struct vigil_denied_record {
	struct vigil_record_hdr hdr;
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u64 cgroup_id;
	__u32 rule_slot;
	__u32 rule_gen;
	__u16 path_len;
	__u16 pad[3];
	char comm[VIGIL_COMM_LEN];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_denied_record) == 72, "vigil_denied_record ABI");

/* Largest record the kernel can produce. */
/* path + args + cwd + filename + interp */
#define VIGIL_EXEC_DATA_MAX \
	(VIGIL_PATH_MAX + VIGIL_ARGS_MAX + VIGIL_PATH_MAX + VIGIL_FILENAME_MAX + VIGIL_INTERP_MAX)
#define VIGIL_RECORD_MAX (sizeof(struct vigil_exec_record) + VIGIL_EXEC_DATA_MAX)
