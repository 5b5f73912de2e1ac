/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Process identity: host and own-namespace pids, namespaces, creds, cgroup. */
#ifndef DRIFTWATCH_TASK_H
#define DRIFTWATCH_TASK_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* &pid->numbers[level]; struct upid's size comes from the running kernel. */
static __always_inline struct upid *pid_upid(struct pid *pid, unsigned int level)
{
	return (void *)pid + bpf_core_field_offset(struct pid, numbers) +
	       (u64)level * bpf_core_type_size(struct upid);
}

/* The task's pid as seen from its own (deepest) pid namespace. */
static __always_inline u32 task_ns_pid(struct task_struct *task, unsigned int level)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	if (!pid || BPF_CORE_READ(pid, level) != level)
		return 0; /* not in that namespace: invisible from it */
	return BPF_CORE_READ(pid_upid(pid, level), nr);
}

struct dw_task_ids {
	u32 host_pid, host_tid, host_ppid;
	u32 ns_pid, ns_tid, ns_ppid;
	u32 pid_ns;
};

static __always_inline void task_ids(struct task_struct *task, struct dw_task_ids *ids)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);

	ids->host_pid = BPF_CORE_READ(task, tgid);
	ids->host_tid = BPF_CORE_READ(task, pid);
	ids->host_ppid = BPF_CORE_READ(parent, tgid);
	ids->ns_tid = BPF_CORE_READ(pid_upid(pid, level), nr);
	ids->pid_ns = BPF_CORE_READ(pid_upid(pid, level), ns, ns.inum);
	ids->ns_pid = task_ns_pid(leader, level);
	ids->ns_ppid = task_ns_pid(BPF_CORE_READ(parent, group_leader), level);
}

#endif
