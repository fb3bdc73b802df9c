/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Context layouts of the SEC("syscall") test programs in decide_test.bpf.c. BPF_PROG_TEST_RUN
 * copies a context in, runs the program, and copies the modified context back over ctx_in,
 * so each struct carries the inputs and the outputs of one helper.
 *
 * Compiled by clang -target bpf (after vmlinux.h) and by the C++ test. Fixed-width types,
 * explicit padding, a size assertion per struct.
 */
#pragma once

#include <vigil/records.h>

/* Components one path__prepend run can take: enough to fill VIGIL_PATH_MAX and then some. */
#define VIGIL_TEST_COMPONENTS 20
/* Room for one component name: VIGIL_NAME_MAX (255) bytes and one more, to see the clamp. */
#define VIGIL_TEST_NAME_SLOT 256
/* Must equal VIGIL_NAME_MAX from path.bpf.h; decide_test.bpf.c asserts it. */
#define VIGIL_TEST_NAME_MAX 255

/* decide__group_dead(live_threads) */
struct vigil_test_group_dead_ctx {
	__s32 live_threads; /* in */
	__u32 dead;         /* out: 0 or 1 */
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_test_group_dead_ctx) == 8, "group_dead ctx");

/* policy__lowest_bit(word): the rule slot a matching word picks */
struct vigil_test_lowest_bit_ctx {
	__u64 word; /* in, non-zero */
	__u32 bit;  /* out */
	__u32 pad;
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_test_lowest_bit_ctx) == 16, "lowest_bit ctx");

/* decide__is_new_process(child_pid, child_tgid) */
struct vigil_test_new_process_ctx {
	__u32 child_pid;  /* in */
	__u32 child_tgid; /* in */
	__u32 is_new;     /* out: 0 or 1 */
	__u32 pad;
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_test_new_process_ctx) == 16, "new_process ctx");

/* decide__exit_status(signal_flags, group_exit_code, task_exit_code) */
struct vigil_test_exit_status_ctx {
	__u32 signal_flags;    /* in */
	__s32 group_exit_code; /* in */
	__s32 task_exit_code;  /* in */
	__u32 status;          /* out */
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_test_exit_status_ctx) == 16, "exit_status ctx");

/* decide__args_len(arg_start, arg_end, &flags) */
struct vigil_test_args_len_ctx {
	__u64 arg_start; /* in */
	__u64 arg_end;   /* in */
	__u32 flags;     /* in and out: the helper may only add VIGIL_EXEC_ARGS_TRUNCATED */
	__u32 len;       /* out */
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_test_args_len_ctx) == 24, "args_len ctx");

/*
 * path__prepend() applied to components leaf first, starting at pos, on the test's buffer
 * (the vigil_test_path_buf map, which userspace fills before the run). The program stops at
 * the first negative return.
 */
struct vigil_test_prepend_ctx {
	/* in */
	__u32 count;                     /* components to prepend, <= VIGIL_TEST_COMPONENTS */
	__u32 pos;                       /* where the path ends; normally VIGIL_PATH_MAX */
	__u32 len[VIGIL_TEST_COMPONENTS]; /* length passed to path__prepend (may exceed the slot) */
	/* When non-zero, the kernel address to read the name from instead of name[i]. */
	__u64 addr[VIGIL_TEST_COMPONENTS];
	char name[VIGIL_TEST_COMPONENTS][VIGIL_TEST_NAME_SLOT];
	/* out */
	__s64 ret[VIGIL_TEST_COMPONENTS]; /* path__prepend's returns; 0 past attempted */
	__u32 attempted;                  /* components passed to path__prepend */
	__u32 pad;
	__s64 start;                 /* last good position: the path is path[start, pos) */
	char path[VIGIL_PATH_MAX];   /* the buffer's first VIGIL_PATH_MAX bytes after the run */
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_test_prepend_ctx) == 9640, "prepend ctx");

/* The value of vigil_test_path_buf: the size path__prepend's callers give it. */
struct vigil_test_path_buf {
	char b[2 * VIGIL_PATH_MAX];
};
VIGIL_ABI_ASSERT(sizeof(struct vigil_test_path_buf) == 2 * VIGIL_PATH_MAX, "path buf");
