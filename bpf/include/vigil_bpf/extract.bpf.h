/* SPDX-License-Identifier: GPL-2.0-only */
/* Reading task state with CO-RE. */
#pragma once

#include "vigil_bpf/common.bpf.h"

static __always_inline __u64 extract__cgroup_id(struct task_struct *task)
{
	return BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
}

static __always_inline __u32 extract__ppid(struct task_struct *task)
{
	return BPF_CORE_READ(task, real_parent, tgid);
}

static __always_inline __u64 extract__proc_start_ns(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_time);
}
