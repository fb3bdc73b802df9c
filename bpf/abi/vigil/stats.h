/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Per-CPU kernel counters (the vigil_stats map), indexed by enum vigil_stat. The agent sums
 * them over CPUs and shows them by name. Names are defined once, here, for both sides.
 */
#pragma once

#define VIGIL_STATS(X)                                                               \
	X(EXEC_EMITTED, "exec_emitted")                                              \
	X(EXIT_EMITTED, "exit_emitted")                                              \
	X(FORK_EMITTED, "fork_emitted")                                              \
	X(EXEC_LOST, "exec_lost_ringbuf_full")                                       \
	X(EXIT_LOST, "exit_lost_ringbuf_full")                                       \
	X(FORK_LOST, "fork_lost_ringbuf_full")                                       \
	X(SCRATCH_MISSING, "scratch_buffer_missing")                                 \
	X(PATH_TRUNCATED, "path_truncated")                                          \
	X(CWD_TRUNCATED, "cwd_truncated")                                            \
	X(ARGS_TRUNCATED, "args_truncated")                                          \
	X(READ_FAILED, "kernel_read_failed")

enum vigil_stat {
#define VIGIL_STAT_ENUM(id, name) VIGIL_STAT_##id,
	VIGIL_STATS(VIGIL_STAT_ENUM)
#undef VIGIL_STAT_ENUM
	VIGIL_STAT_MAX,
};
