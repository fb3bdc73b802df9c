/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Pure decisions taken by the programs. They take plain values, not kernel pointers, so that
 * tests/bpf drives them through BPF_PROG_TEST_RUN.
 */
#pragma once

#include "vigil_bpf/common.bpf.h"

/* sched_process_exit fires once per thread; a process has exited when no thread is live. */
static __always_inline bool decide__group_dead(int live_threads)
{
	return live_threads <= 0;
}

/* sched_process_fork fires for threads too; only a new thread group is a new process. */
static __always_inline bool decide__is_new_process(__u32 child_pid, __u32 child_tgid)
{
	return child_pid == child_tgid;
}

/*
 * The wait status of a whole process. A group exit (exit_group(2) with several threads, or a
 * fatal signal) records the status in the signal struct; otherwise it is the task's own.
 */
static __always_inline __u32 decide__exit_status(__u32 signal_flags, int group_exit_code,
						 int task_exit_code)
{
	if (signal_flags & VIGIL_SIGNAL_GROUP_EXIT)
		return (__u32)group_exit_code;
	return (__u32)task_exit_code;
}

/* How many argv bytes to copy; sets VIGIL_EXEC_ARGS_TRUNCATED when they do not all fit. */
static __always_inline __u32 decide__args_len(__u64 arg_start, __u64 arg_end, __u32 *flags)
{
	__u64 len;

	if (arg_end <= arg_start)
		return 0;
	len = arg_end - arg_start;
	if (len > VIGIL_ARGS_MAX) {
		*flags |= VIGIL_EXEC_ARGS_TRUNCATED;
		return VIGIL_ARGS_MAX;
	}
	return (__u32)len;
}
