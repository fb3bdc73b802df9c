/* SPDX-License-Identifier: GPL-2.0-only */
/* What every Vigil BPF program includes first. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include <vigil/records.h>
#include <vigil/stats.h>

#ifndef container_of
#define container_of(ptr, type, member)                                     \
	({                                                                  \
		void *__mptr = (void *)(ptr);                               \
		((type *)(__mptr - __builtin_offsetof(type, member)));      \
	})
#endif

/* Kernel constants that BTF does not carry (they are #defines). */
#define VIGIL_SIGNAL_GROUP_EXIT 0x00000004
