// SPDX-License-Identifier: GPL-2.0-only
/* The exec policy decision, one global function shared by the tracepoint and LSM programs
 * (see policy.bpf.h). */
#include "vigil_bpf/policy.bpf.h"

__noinline int policy__evaluate(struct vigil_exec_scratch *s, __u64 file_addr, __u32 uid,
				__u32 path_start, __u32 send_kill)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *file = (struct file *)file_addr;
	struct vigil_exec_record *rec;
	struct vigil_policy_state *st;
	struct vigil_ruleset *rs;
	struct vigil_rule_bitmap *bin, *par = 0, *uidb, *pre, *cgb = 0;
	struct vigil_file_key fk = {};
	struct vigil_uid_key uk = {};
	struct vigil_cgroup_key ck = {};
	struct file *parent_exe;
	__u32 zero = 0, gen, len, w, lvl, slot = 0, key;
	__u32 verdict = VIGIL_VERDICT_NONE;
	__u64 *hits;

	if (!s)
		return 0;
	rec = &s->rec;
	rec->verdict = VIGIL_VERDICT_NONE;
	rec->rule_slot = 0;
	rec->rule_gen = 0;
	st = bpf_map_lookup_elem(&vigil_policy_state, &zero);
	if (!st || !st->active)
		return 0;
	gen = st->gen;
	rs = bpf_map_lookup_elem(&vigil_rulesets, &gen);
	if (!rs)
		return 0;

	fk.gen = gen;
	fk.dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
	fk.ino = BPF_CORE_READ(file, f_inode, i_ino);
	bin = bpf_map_lookup_elem(&vigil_rule_binaries, &fk);

	parent_exe = BPF_CORE_READ(task, real_parent, mm, exe_file);
	if (parent_exe) {
		fk.dev = BPF_CORE_READ(parent_exe, f_inode, i_sb, s_dev);
		fk.ino = BPF_CORE_READ(parent_exe, f_inode, i_ino);
		par = bpf_map_lookup_elem(&vigil_rule_parents, &fk);
	}

	uk.gen = gen;
	uk.uid = uid;
	uidb = bpf_map_lookup_elem(&vigil_rule_uids, &uk);

	len = path_start < VIGIL_PATH_MAX ? VIGIL_PATH_MAX - path_start : 0;
	if (len > VIGIL_PREFIX_MAX)
		len = VIGIL_PREFIX_MAX;
	s->pkey.prefixlen = 32 + 8 * len;
	__builtin_memcpy(s->pkey.data, &gen, sizeof(gen));
	bpf_probe_read_kernel(&s->pkey.data[4], len & 511,
			      &s->path[path_start & VIGIL_PATH_MASK]);
	pre = bpf_map_lookup_elem(&vigil_rule_prefixes, &s->pkey);

	/*
	 * A cgroup rule matches the exec's cgroup and its descendants. Userspace stores, for each
	 * rule cgroup, the rules of every rule cgroup above it too, so the deepest ancestor found
	 * carries all that apply.
	 */
	ck.gen = gen;
	for (lvl = 0; lvl < VIGIL_CGROUP_LEVELS; lvl++) {
		struct vigil_rule_bitmap *found;

		ck.id = bpf_get_current_ancestor_cgroup_id(lvl);
		if (!ck.id)
			break;
		found = bpf_map_lookup_elem(&vigil_rule_cgroups, &ck);
		if (found)
			cgb = found;
	}

	policy__and(&s->acc, bin, rs, &rs->any_binary, true);
	policy__and(&s->acc, pre, rs, &rs->any_prefix, false);
	policy__and(&s->acc, par, rs, &rs->any_parent, false);
	policy__and(&s->acc, uidb, rs, &rs->any_uid, false);
	policy__and(&s->acc, cgb, rs, &rs->any_cgroup, false);

	for (w = 0; w < VIGIL_RULE_WORDS; w++) {
		__u64 m, k;

		if (w >= rs->nwords)
			break;
		m = s->acc.w[w];
		if (!m)
			continue;
		k = m & rs->kill.w[w];
		if (k) {
			verdict = VIGIL_VERDICT_KILL;
			slot = w * 64 + policy__lowest_bit(k);
			break;
		}
		if (verdict == VIGIL_VERDICT_NONE) {
			verdict = VIGIL_VERDICT_AUDIT;
			slot = w * 64 + policy__lowest_bit(m);
		}
	}
	if (verdict == VIGIL_VERDICT_NONE)
		return 0;
	if (verdict == VIGIL_VERDICT_KILL && send_kill)
		bpf_send_signal(VIGIL_SIGKILL);
	rec->verdict = verdict;
	rec->rule_slot = slot;
	rec->rule_gen = gen;
	/* Key read back from map memory: an exact slot value here would make the verifier
	 * track every slot the loop above can produce as a separate state. */
	key = rec->rule_slot;
	hits = bpf_map_lookup_elem(&vigil_rule_hits, &key);
	if (hits)
		*hits += 1;
	return verdict;
}
