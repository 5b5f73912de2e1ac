/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Process identity: host and own-namespace pids, namespaces, creds, cgroup. */
#ifndef DRIFTWATCH_TASK_H
#define DRIFTWATCH_TASK_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/*
 * The exec record reads the current task through a BTF pointer where the
 * kernel has bpf_get_current_task_btf (5.11+): each field is then one load the
 * verifier checked, not a bpf_probe_read_kernel call (~50 ns apiece here).
 * DW_READ(btf, src, a, b) is src->a->b either way; btf must be a load-time
 * constant (dw_task_btf()), so the verifier only ever walks one of the two.
 */
#define dw_task_btf() bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)
#define DW_READ(btf, src, a, ...) ((btf) ? ___arrow(src, a, ##__VA_ARGS__) : BPF_CORE_READ(src, a, ##__VA_ARGS__))

/* The current task: a BTF pointer when btf, else the untyped one given. */
static __always_inline struct task_struct *dw_current(bool btf, struct task_struct *task)
{
	return btf ? bpf_get_current_task_btf() : task;
}

#define DW_PID_LEVEL_MASK 63 /* pid namespaces nest at most 32 deep (MAX_PID_NS_LEVEL) */

/* &pid->numbers[level]; struct upid's size comes from the running kernel.
 * pid may be a BTF pointer, and older verifiers (6.1) add only a bounded
 * offset to one: the level is masked, and the multiply is written with the
 * known size as its source (they give up on a multiply by an unknown). */
static __always_inline struct upid *pid_upid(struct pid *pid, unsigned int level)
{
	u64 off = level & DW_PID_LEVEL_MASK;
	u64 size = bpf_core_type_size(struct upid);
	asm volatile("%[off] *= %[size]" : [off] "+r"(off) : [size] "r"(size));
	return (void *)pid + bpf_core_field_offset(struct pid, numbers) + off;
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
	struct task_struct *parent; /* the one host_ppid was read from: the ancestry starts here */
};

/* task_ns_pid() for a task reached through DW_READ. */
static __always_inline u32 task_ns_pid_of(bool btf, struct task_struct *task, unsigned int level)
{
	struct pid *pid = DW_READ(btf, task, thread_pid);
	if (!pid || DW_READ(btf, pid, level) != level)
		return 0;
	return BPF_CORE_READ(pid_upid(pid, level), nr);
}

/* task is dw_current(btf, ...). */
static __always_inline void task_ids(bool btf, struct task_struct *task, struct dw_task_ids *ids)
{
	struct task_struct *leader = DW_READ(btf, task, group_leader);
	struct task_struct *parent = DW_READ(btf, task, real_parent);
	struct pid *pid = DW_READ(btf, task, thread_pid);
	unsigned int level = DW_READ(btf, pid, level);
	struct upid *upid = pid_upid(pid, level);

	ids->host_pid = DW_READ(btf, task, tgid);
	ids->host_tid = DW_READ(btf, task, pid);
	ids->host_ppid = DW_READ(btf, parent, tgid);
	ids->ns_tid = BPF_CORE_READ(upid, nr);
	ids->pid_ns = BPF_CORE_READ(upid, ns, ns.inum);
	/* After exec the task leads its thread group (de_thread); at bprm_check
	 * another thread may still lead it. */
	ids->ns_pid = leader == task ? ids->ns_tid : task_ns_pid_of(btf, leader, level);
	ids->ns_ppid = task_ns_pid_of(btf, DW_READ(btf, parent, group_leader), level);
	ids->parent = parent;
}

#endif
