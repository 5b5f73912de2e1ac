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

/* Is t visible in namespace ns (which sits at the given level)? */
static __always_inline bool task_in_ns(struct task_struct *t, struct pid_namespace *ns, unsigned int level)
{
	struct pid *pid = BPF_CORE_READ(t, thread_pid);
	if (!pid || BPF_CORE_READ(pid, level) < level)
		return false;
	return BPF_CORE_READ(pid_upid(pid, level), ns) == ns;
}

/*
 * Walks real_parent links. Records the first DW_MAX_ANCESTORS parents and
 * classifies the session by the topmost ancestor still inside the task's pid
 * namespace: pid 1 there means the container's own tree; anything else was
 * put into the namespace from outside (runc exec, nsenter).
 */
static __always_inline void task_lineage(struct task_struct *task, struct dw_exec_event *e)
{
	unsigned int level = 0;
	struct pid_namespace *ns = task_pid_ns(task, &level);
	struct task_struct *t = BPF_CORE_READ(task, group_leader);

	e->session = level == 0 ? DW_SESSION_HOST : DW_SESSION_UNKNOWN;
	e->ancestors_len = 0;
	bool classified = level == 0; /* host: nothing to classify */
	for (int i = 0; i < DW_SESSION_WALK; i++) {
		struct task_struct *p = BPF_CORE_READ(t, real_parent);
		if (!p || p == t)
			break;
		if (i < DW_MAX_ANCESTORS) {
			e->ancestors[i].host_pid = BPF_CORE_READ(p, tgid);
			BPF_CORE_READ_STR_INTO(&e->ancestors[i].comm, p, comm);
			e->ancestors_len = i + 1;
		}
		if (!classified && !task_in_ns(p, ns, level)) {
			e->session_host_pid = BPF_CORE_READ(t, tgid);
			e->session = task_ns_pid(t, level) == 1 ? DW_SESSION_INIT : DW_SESSION_EXEC;
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
