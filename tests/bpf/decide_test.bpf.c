// SPDX-License-Identifier: GPL-2.0-only
/*
 * Harness for the decision helpers: one SEC("syscall") program per helper, driven by
 * decide_test.cpp through BPF_PROG_TEST_RUN. Each reads its inputs from the context and writes
 * the helper's results back into it; the logic under test stays in the shared .bpf.h files.
 */
#include "vigil_bpf/common.bpf.h"
#include "vigil_bpf/decide.bpf.h"
#include "vigil_bpf/path.bpf.h"
#include "vigil_bpf/policy.bpf.h"

#include "decide_test_abi.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(VIGIL_TEST_NAME_MAX == VIGIL_NAME_MAX, "decide_test_abi.h is out of date");

/* The buffer path__prepend writes into. A plain array, so userspace can fill and read it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_test_path_buf);
} vigil_test_path_buf SEC(".maps");

SEC("syscall")
int vigil_test_group_dead(struct vigil_test_group_dead_ctx *ctx)
{
	ctx->dead = decide__group_dead(ctx->live_threads);
	return 0;
}

SEC("syscall")
int vigil_test_lowest_bit(struct vigil_test_lowest_bit_ctx *ctx)
{
	ctx->bit = policy__lowest_bit(ctx->word);
	return 0;
}

SEC("syscall")
int vigil_test_new_process(struct vigil_test_new_process_ctx *ctx)
{
	ctx->is_new = decide__is_new_process(ctx->child_pid, ctx->child_tgid);
	return 0;
}

/*
 * Both codes are loaded before the call: otherwise clang selects between two context pointers
 * and loads through the result, which the verifier rejects ("modified ctx ptr").
 */
SEC("syscall")
int vigil_test_exit_status(struct vigil_test_exit_status_ctx *ctx)
{
	int group = ctx->group_exit_code;
	int task = ctx->task_exit_code;

	barrier_var(group);
	barrier_var(task);
	ctx->status = decide__exit_status(ctx->signal_flags, group, task);
	return 0;
}

SEC("syscall")
int vigil_test_args_len(struct vigil_test_args_len_ctx *ctx)
{
	__u32 flags = ctx->flags;

	ctx->len = decide__args_len(ctx->arg_start, ctx->arg_end, &flags);
	ctx->flags = flags;
	return 0;
}

/*
 * The verifier takes context accesses at constant offsets only ("modified ctx ptr"), and
 * helpers may not write into a syscall program's context. So the loops are unrolled, results
 * are gathered on the stack (clang may merge the stores of several iterations into one with a
 * variable index), and copied out with ctx_store(): a volatile store stays one instruction at
 * ctx + constant, where a plain copy loop becomes a memcpy that goes through a base register.
 * Names are read by path__prepend with bpf_probe_read_kernel() from the kernel's copy of the
 * context, or from ctx->addr[i] when set.
 */
#define ctx_store(lvalue, val) (*(volatile __typeof__(lvalue) *)&(lvalue) = (val))

SEC("syscall")
int vigil_test_path_prepend(struct vigil_test_prepend_ctx *ctx)
{
	__s64 ret[VIGIL_TEST_COMPONENTS] = {};
	struct vigil_test_path_buf *buf;
	__u32 count = ctx->count;
	__u32 pos = ctx->pos;
	__u32 attempted = 0;
	__u32 key = 0;
	int i;

	buf = bpf_map_lookup_elem(&vigil_test_path_buf, &key);
	if (!buf)
		return 1;

#pragma unroll
	for (i = 0; i < VIGIL_TEST_COMPONENTS; i++) {
		const char *name = ctx->addr[i] ? (const char *)ctx->addr[i] : ctx->name[i];
		long r;

		if (i >= count)
			break;
		r = path__prepend(buf->b, pos, name, ctx->len[i]);
		ret[i] = r;
		attempted = i + 1;
		if (r < 0)
			break;
		pos = r;
	}

#pragma unroll
	for (i = 0; i < VIGIL_TEST_COMPONENTS; i++)
		ctx_store(ctx->ret[i], ret[i]);
	ctx_store(ctx->attempted, attempted);
	ctx_store(ctx->start, pos);
#pragma unroll
	for (i = 0; i < VIGIL_PATH_MAX / 8; i++)
		ctx_store(((__u64 *)ctx->path)[i], ((__u64 *)buf->b)[i]);
	return 0;
}
