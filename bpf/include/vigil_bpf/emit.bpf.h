/* SPDX-License-Identifier: GPL-2.0-only */
/* Putting records into the ring buffer, counting every one that does not fit. */
#pragma once

#include "vigil_bpf/stats.bpf.h"

static __always_inline void emit__hdr(struct vigil_record_hdr *hdr, __u16 type, __u32 size)
{
	hdr->type = type;
	hdr->version = VIGIL_ABI_VERSION;
	hdr->size = size;
	hdr->ktime_ns = bpf_ktime_get_ns();
}

/* Submit flags: wake the reader only when a batch has built up (see cfg_wakeup_bytes). */
static __always_inline __u64 emit__wakeup_flags(void)
{
	if (!cfg_wakeup_bytes)
		return 0;
	if (bpf_ringbuf_query(&vigil_events, BPF_RB_AVAIL_DATA) >= cfg_wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* Copies size bytes from a scratch buffer into the ring buffer. */
static __always_inline void emit__output(void *rec, __u32 size, enum vigil_stat emitted,
					 enum vigil_stat lost)
{
	if (bpf_ringbuf_output(&vigil_events, rec, size, emit__wakeup_flags()) < 0)
		stats__inc(lost);
	else
		stats__inc(emitted);
}

/* Appends the path assembled in s->path[start, VIGIL_PATH_MAX) to the record data at off. */
static __always_inline __u32 emit__append_path(struct vigil_exec_scratch *s, __u32 off,
					       __u32 start)
{
	__u32 len;

	if (start >= VIGIL_PATH_MAX)
		return 0;
	len = VIGIL_PATH_MAX - start;
	if (bpf_probe_read_kernel(&s->data[off & VIGIL_DATA_MASK], len,
				  &s->path[start & VIGIL_PATH_MASK]) < 0)
		return 0;
	return len;
}

/* Appends a NUL-terminated kernel string without its NUL; returns the bytes appended. */
static __always_inline __u32 emit__append_kstr(struct vigil_exec_scratch *s, __u32 off,
					       const char *str, __u32 max)
{
	long n;

	if (max > VIGIL_PATH_MAX)
		max = VIGIL_PATH_MAX;
	n = bpf_probe_read_kernel_str(&s->data[off & VIGIL_DATA_MASK], max, str);
	return n > 0 ? (__u32)(n - 1) : 0;
}
