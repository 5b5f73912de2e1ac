/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* The task's cgroup, whose name carries the container id. */
#ifndef DRIFTWATCH_CGROUP_H
#define DRIFTWATCH_CGROUP_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "maps.h"
#include "task.h"

/* kn's parent; kn reached through DW_READ. */
static __always_inline struct kernfs_node *kernfs_parent_of(bool btf, struct kernfs_node *kn)
{
	if (bpf_core_field_exists(struct kernfs_node___new, __parent)) {
		struct kernfs_node___new *n = (void *)kn;
		return DW_READ(btf, n, __parent);
	}
	struct kernfs_node___old *o = (void *)kn;
	return DW_READ(btf, o, parent);
}

static __always_inline struct kernfs_node *kernfs_parent(struct kernfs_node *kn)
{
	return kernfs_parent_of(false, kn);
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

/*
 * The names of the task's cgroup and of its parent, as task_cgroup_kn()
 * chooses it; task is dw_current(btf, ...). The cgroup v1 fallback reads
 * through probes: its css pointer is indexed by a subsystem id.
 */
static __always_inline void task_cgroup_names(bool btf, struct task_struct *task, const char **name,
					      const char **parent_name)
{
	struct kernfs_node *kn = DW_READ(btf, task, cgroups, dfl_cgrp, kn);
	struct kernfs_node *parent = kernfs_parent_of(btf, kn);
	if (parent) {
		*name = DW_READ(btf, kn, name);
		*parent_name = DW_READ(btf, parent, name);
		return;
	}
	kn = task_cgroup_kn(task);
	*name = BPF_CORE_READ(kn, name);
	*parent_name = BPF_CORE_READ(kernfs_parent(kn), name);
}

#endif
