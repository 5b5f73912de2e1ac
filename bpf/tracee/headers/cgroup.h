/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* The task's cgroup, whose name carries the container id. */
#ifndef DRIFTWATCH_CGROUP_H
#define DRIFTWATCH_CGROUP_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "maps.h"

static __always_inline struct kernfs_node *kernfs_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(struct kernfs_node___new, __parent)) {
		struct kernfs_node___new *n = (void *)kn;
		return BPF_CORE_READ(n, __parent);
	}
	struct kernfs_node___old *o = (void *)kn;
	return BPF_CORE_READ(o, parent);
}

/*
 * The default (v2) hierarchy cgroup, unless the task sits at its root: on a
 * cgroup v1 host every task is at the v2 root and runtimes name their cgroup
 * in the v1 hierarchies instead, so read the memory (or pids) one.
 */
static __always_inline struct kernfs_node *task_cgroup_kn(struct task_struct *task)
{
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct kernfs_node *kn = BPF_CORE_READ(cset, dfl_cgrp, kn);
	if (kernfs_parent(kn))
		return kn;

	int id = -1;
	if (bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	else if (bpf_core_enum_value_exists(enum cgroup_subsys_id, pids_cgrp_id))
		id = bpf_core_enum_value(enum cgroup_subsys_id, pids_cgrp_id);
	if (id < 0 || id >= 64)
		return kn;
	struct cgroup_subsys_state *css = NULL;
	bpf_probe_read_kernel(&css, sizeof(css),
			      (void *)cset + bpf_core_field_offset(struct css_set, subsys) + id * sizeof(void *));
	struct kernfs_node *v1 = BPF_CORE_READ(css, cgroup, kn);
	if (!v1 || !kernfs_parent(v1))
		return kn;
	stat_inc(DW_STAT_CGROUP_V1_FALLBACK);
	return v1;
}

#endif
