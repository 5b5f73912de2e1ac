/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Ancestry and exec-session detection, done at exec time so a process that
 * exits a millisecond later is still attributed (no /proc race).
 */
#ifndef DRIFTWATCH_LINEAGE_H
#define DRIFTWATCH_LINEAGE_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "events.h"
#include "task.h"

#define DW_SESSION_WALK 16

static __always_inline struct pid_namespace *task_pid_ns(struct task_struct *t, unsigned int *level)
{
	struct pid *pid = BPF_CORE_READ(t, thread_pid);
	*level = BPF_CORE_READ(pid, level);
	return BPF_CORE_READ(pid_upid(pid, *level), ns);
}

/*
 * Copies a comm[16] reached through DW_READ. Direct: two 8-byte loads, which
 * BTF allows inside a char array; the bytes after the NUL may be those of an
 * older, longer name (user space stops at the NUL).
 */
static __always_inline void copy_comm(bool btf, char *dst, struct task_struct *t)
{
	if (btf) {
		u64 *src = (u64 *)t->comm;
		((u64 *)dst)[0] = src[0];
		((u64 *)dst)[1] = src[1];
	} else {
		BPF_CORE_READ_STR_INTO((char(*)[16])dst, t, comm);
	}
}

/*
 * Walks real_parent links. Records the first DW_MAX_ANCESTORS parents and
 * classifies the session by the topmost ancestor still inside the task's pid
 * namespace: pid 1 there means the container's own tree; anything else was
 * put into the namespace from outside (runc exec, nsenter).
 *
 * A parent's pid namespace is always the child's or one of its ancestors
 * (fork takes the parent's namespace or a descendant it entered, and orphans
 * are reparented within their namespace), so along the walk an ancestor is
 * inside the task's namespace exactly when its pid has the task's level: the
 * level alone decides, no namespace pointer needs reading. parent is the
 * task's real parent (dw_task_ids.parent).
 */
static __always_inline void task_lineage(bool btf, struct task_struct *task, struct task_struct *parent,
					 struct dw_exec_event *e)
{
	struct pid *pid = DW_READ(btf, task, thread_pid);
	unsigned int level = DW_READ(btf, pid, level);
	struct task_struct *t = DW_READ(btf, task, group_leader);

	e->session = level == 0 ? DW_SESSION_HOST : DW_SESSION_UNKNOWN;
	e->ancestors_len = 0;
	bool classified = level == 0; /* host: nothing to classify */
	for (int i = 0; i < DW_SESSION_WALK; i++) {
		/* The first parent is the one the record's host_ppid names, read once:
		 * a reparenting in between (runc exec's child to conmon) must not make
		 * them disagree. */
		struct task_struct *p = i == 0 ? parent : DW_READ(btf, t, real_parent);
		if (!p || p == t)
			break;
		if (i < DW_MAX_ANCESTORS) {
			e->ancestors[i].host_pid = DW_READ(btf, p, tgid);
			copy_comm(btf, e->ancestors[i].comm, p);
			e->ancestors_len = i + 1;
		}
		if (!classified && DW_READ(btf, p, thread_pid, level) < level) {
			e->session_host_pid = DW_READ(btf, t, tgid);
			e->session = task_ns_pid_of(btf, t, level) == 1 ? DW_SESSION_INIT : DW_SESSION_EXEC;
			classified = true;
		}
		/* Past the session boundary the ancestry goes on (runc exec's parent
		 * is still alive or the process was already reparented to conmon /
		 * the shim: either way who started the session is recorded). */
		if (classified && i >= DW_MAX_ANCESTORS - 1)
			break;
		t = p;
	}
}

#endif
