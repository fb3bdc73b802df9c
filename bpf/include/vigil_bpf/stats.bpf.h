/* SPDX-License-Identifier: GPL-2.0-only */
#pragma once

#include "vigil_bpf/maps.bpf.h"

static __always_inline void stats__inc(enum vigil_stat id)
{
	__u32 key = id;
	__u64 *v = bpf_map_lookup_elem(&vigil_stats, &key);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}
