// SPDX-License-Identifier: GPL-2.0-only
/*
 * Minimal programs, one per capability. The agent enables one at a time (autoload), loads and
 * attaches it, and records whether the kernel accepted it and why not.
 */
#include "vigil_bpf/common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} probe_ringbuf SEC(".maps");

SEC("tp_btf/sched_process_exec")
int BPF_PROG(probe_tp_btf)
{
	return 0;
}

SEC("raw_tp/sched_process_exec")
int probe_raw_tp(void *ctx)
{
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int probe_tracepoint(void *ctx)
{
	return 0;
}

SEC("kprobe/do_exit")
int probe_kprobe(void *ctx)
{
	return 0;
}

SEC("fentry/do_exit")
int BPF_PROG(probe_fentry)
{
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(probe_lsm)
{
	return 0;
}

SEC("xdp")
int probe_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int probe_tc(struct __sk_buff *skb)
{
	return 0;
}

SEC("cgroup_skb/ingress")
int probe_cgroup_skb(struct __sk_buff *skb)
{
	return 1;
}

SEC("iter/task")
int probe_iter_task(struct bpf_iter__task *ctx)
{
	return 0;
}

/* Uses the ring buffer and bpf_send_signal() (signal 0 only checks the helper exists). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(probe_helpers)
{
	bpf_ringbuf_output(&probe_ringbuf, &ctx, 1, 0);
	if (ctx == 0)
		bpf_send_signal(0);
	return 0;
}
