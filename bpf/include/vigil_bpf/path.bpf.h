/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Absolute paths resolved from a (dentry, vfsmount) pair, as d_path() would, without
 * bpf_d_path() (which tracepoint programs may not call). The path is assembled backwards in
 * s->path and ends at s->path[VIGIL_PATH_MAX].
 *
 * The walk keeps its state in the per-CPU scratch value, not in registers: every iteration then
 * looks the same to the verifier, which prunes instead of exploring each depth separately.
 */
#pragma once

#include "vigil_bpf/maps.bpf.h"

#define VIGIL_NAME_MAX 255

/*
 * Prepends "/<name>" before buf[pos]. Returns the new start, or -1 when the component does not
 * fit (the path is then truncated at the top), or -2 when the name could not be read.
 */
static __always_inline long path__prepend(char *buf, __u32 pos, const char *name, __u32 len)
{
	if (len > VIGIL_NAME_MAX)
		len = VIGIL_NAME_MAX;
	if (pos > VIGIL_PATH_MAX || len + 1 > pos)
		return -1;
	pos -= len;
	if (bpf_probe_read_kernel(&buf[pos & VIGIL_PATH_MASK], len, name) < 0)
		return -2;
	pos -= 1;
	buf[pos & VIGIL_PATH_MASK] = '/';
	return pos;
}

/* One step up: a component, or a crossing to the parent mount. Returns true when done. */
static __always_inline bool path__step(struct vigil_exec_scratch *s)
{
	struct vigil_path_walk *w = &s->walk;
	struct dentry *dentry = (struct dentry *)w->dentry;
	struct mount *mnt = (struct mount *)w->mnt;
	struct dentry *mnt_root = BPF_CORE_READ(mnt, mnt.mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
	long pos;

	if (dentry == mnt_root || dentry == parent) {
		struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);

		/* The namespace root, or a mount that is not attached anywhere. */
		if (dentry != mnt_root || mnt == mnt_parent)
			return true;
		w->dentry = (__u64)BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = (__u64)mnt_parent;
		return false;
	}
	pos = path__prepend(s->path, w->pos, (const char *)BPF_CORE_READ(dentry, d_name.name),
			    BPF_CORE_READ(dentry, d_name.len));
	if (pos < 0) {
		w->status = pos == -1 ? VIGIL_PATH_TRUNCATED : VIGIL_PATH_FAILED;
		return true;
	}
	w->pos = pos;
	w->dentry = (__u64)parent;
	return false;
}

/* Walks from dentry up to the root of its mount namespace. Result in s->walk. */
static __always_inline void extract__path(struct vigil_exec_scratch *s, struct dentry *dentry,
					  struct vfsmount *vfsmnt)
{
	struct vigil_path_walk *w = &s->walk;
	int i;

	w->dentry = (__u64)dentry;
	w->mnt = (__u64)container_of(vfsmnt, struct mount, mnt);
	w->pos = VIGIL_PATH_MAX;
	w->status = VIGIL_PATH_OK;
	if (!dentry || !vfsmnt) {
		w->status = VIGIL_PATH_FAILED;
		return;
	}
	for (i = 0; i < VIGIL_PATH_DEPTH; i++) {
		if (path__step(s))
			break;
	}
	if (i == VIGIL_PATH_DEPTH)
		w->status = VIGIL_PATH_TRUNCATED;
	if (w->pos >= VIGIL_PATH_MAX) {
		w->pos = VIGIL_PATH_MAX - 1;
		s->path[VIGIL_PATH_MAX - 1] = '/';
	}
}
