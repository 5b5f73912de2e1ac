/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Prevention: stop a drifted exec before its code runs.
 *
 * User space cannot answer in time, so the decision is made here, from maps
 * user space keeps (src/prevent/): the switch and dry run (prevent_config),
 * what each container prevents, by cgroup id (prevent_containers: a mask of
 * drift kinds, one bit per kind a signature stands for), and the exceptions,
 * compiled to path prefixes of the executed file in an LPM trie per
 * exception set (prevent_exceptions).
 *
 * Two ways to stop:
 *   - at bprm_check_security, where BPF-LSM is active: the exec fails with
 *     -EPERM and the caller goes on (prevent_bprm_check);
 *   - elsewhere at sched_process_exec: the new image is mapped but has run no
 *     instruction yet; SIGKILL is pending when the task returns to user space.
 *
 * Never stopped: host tasks and anything still in the host's mount namespace
 * (a runtime re-executing its own memfd copy does so before it enters the
 * container's namespaces), tasks of undescribed cgroups that share the
 * host's pid namespace, image files, and cgroups user space put out of
 * scope (mask 0).
 */
#ifndef DRIFTWATCH_PREVENT_BPF_H
#define DRIFTWATCH_PREVENT_BPF_H

#include "headers/vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "headers/events.h"
#include "headers/maps.h"
#include "headers/path.h"

#define DW_SIGKILL 9
#define DW_EPERM 1

/* Drift kinds: what the kernel can tell about an exec, one bit each. User
 * space maps every preventable signature to some of them
 * (src/prevent/kinds.ts mirrors these values). */
#define DW_KIND_UPPER_NEW    (1U << 0) /* drift.new_executable */
#define DW_KIND_UPPER_COPIED (1U << 1) /* drift.modified_executable */
#define DW_KIND_MEMFD        (1U << 2) /* drift.fileless_exec */
#define DW_KIND_UNLINKED     (1U << 3) /* drift.fileless_exec */
#define DW_KIND_TMPFS        (1U << 4) /* drift.tmpfs_exec */
#define DW_KIND_SCRIPT       (1U << 5) /* drift.new_script: the #! script itself is drift */
#define DW_KIND_VOLUME       (1U << 6) /* drift.volume_exec */

struct dw_prevent_config {
	__u32 enabled;        /* the kill switch: 0 stops nothing, at once */
	__u32 dry_run;        /* decide and report, stop nothing */
	__u32 unknown_kinds;  /* for cgroups user space has not described yet */
	__u32 unknown_exc_set;
};

struct dw_prevent_container {
	__u32 kinds;   /* drift kinds stopped in this container; 0: out of scope */
	__u32 exc_set; /* exception set in prevent_exceptions; 0: none */
};

#define DW_PREVENT_PATH_MAX 248

/* LPM key: exception set, then the path from the process's root. Exact paths
 * are stored with their NUL, prefixes without. */
struct dw_prevent_exc_key {
	__u32 prefixlen;
	__u32 exc_set;
	char path[DW_PREVENT_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct dw_prevent_config);
} prevent_config SEC(".maps");

/* LRU: a node's live containers fit; one gone without notice ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, struct dw_prevent_container);
} prevent_containers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct dw_prevent_exc_key);
	__type(value, u32); /* drift kinds the exception lets run */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} prevent_exceptions SEC(".maps");

/* The key is built here; names may spill past it into the slack (masked
 * writes), which the verifier checks against the whole value. */
struct dw_prevent_scratch {
	struct dw_prevent_exc_key key;
	char slack[DW_NAME_MAX + 8];
	u64 names[DW_MAX_PATH_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct dw_prevent_scratch);
} prevent_scratch SEC(".maps");

/* What the exec is, as drift kinds; 0 for an image or host file. Mirrors
 * src/pipeline/classify.ts and the built-in signatures. */
static __always_inline u32 drift_kinds(struct file *file, u32 flags, u16 script_flags)
{
	u32 k = 0;
	if (flags & DW_FILE_MEMFD)
		k |= DW_KIND_MEMFD;
	else if (flags & DW_FILE_TMPFS)
		k |= DW_KIND_TMPFS;
	else if (flags & DW_FILE_OVERLAY) {
		if ((flags & DW_FILE_OVL_UPPER_DENTRY) && (flags & DW_FILE_OVL_UPPER_ALIAS))
			k |= (flags & DW_FILE_OVL_HAS_LOWER) ? DW_KIND_UPPER_COPIED : DW_KIND_UPPER_NEW;
	} else if (!(flags & DW_FILE_SCRIPT) && !(BPF_CORE_READ(file, f_path.mnt, mnt_flags) & MNT_READONLY)) {
		k |= DW_KIND_VOLUME; /* a writable plain mount seen from a container */
	}
	if (flags & DW_FILE_UNLINKED)
		k |= DW_KIND_UNLINKED;
	if (script_flags & DW_SCRIPT_KNOWN) {
		u32 s = script_flags & DW_SCRIPT_FILE_MASK;
		if ((s & (DW_FILE_MEMFD | DW_FILE_TMPFS | DW_FILE_UNLINKED)) ||
		    ((s & DW_FILE_OVL_UPPER_DENTRY) && (s & DW_FILE_OVL_UPPER_ALIAS)))
			k |= DW_KIND_SCRIPT;
	}
	return k;
}

/* Root-first path of the file as the task sees it, into s->key.path; returns
 * its length with the NUL, or 0 when it does not fit (then no exception can
 * match: the exec is judged without them). */
static __always_inline u32 prevent_path(struct dw_prevent_scratch *s, struct file *file, struct task_struct *task)
{
	struct dentry *root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	struct vfsmount *root_mnt = BPF_CORE_READ(task, fs, root.mnt);
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	struct mount *mnt = real_mount(vfsmnt);
	u32 depth = 0;
	bool complete = false;

	for (int i = 0; i < DW_MAX_PATH_DEPTH; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt) {
			complete = true;
			break;
		}
		if (dentry == BPF_CORE_READ(vfsmnt, mnt_root)) {
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
			if (parent == mnt) {
				complete = true;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			vfsmnt = (void *)parent + bpf_core_field_offset(struct mount, mnt);
			if (dentry == root_dentry && vfsmnt == root_mnt) {
				complete = true;
				break;
			}
		}
		s->names[i & (DW_MAX_PATH_DEPTH - 1)] = (u64)BPF_CORE_READ(dentry, d_name.name);
		depth++;
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
		if (parent == dentry) {
			complete = true;
			break;
		}
		dentry = parent;
	}
	if (!complete || depth == 0)
		return 0;

	char *p = s->key.path;
	u32 off = 0;
	for (int i = 0; i < DW_MAX_PATH_DEPTH; i++) {
		if (i >= depth)
			break;
		if (off >= DW_PREVENT_PATH_MAX - 1)
			return 0;
		/* The compiler knows off is small and would drop the masks the
		 * verifier needs: hide it. */
		u32 o = off;
		barrier_var(o);
		p[o & (DW_NAME_MAX - 1)] = '/';
		o++;
		barrier_var(o);
		long n = bpf_probe_read_kernel_str(&p[o & (DW_NAME_MAX - 1)], DW_NAME_MAX,
						   (void *)s->names[(depth - 1 - i) & (DW_MAX_PATH_DEPTH - 1)]);
		if (n <= 0)
			return 0;
		off++;
		off += n - 1;
	}
	if (off >= DW_PREVENT_PATH_MAX)
		return 0;
	return off + 1;
}

static __always_inline bool prevent_excepted(u32 exc_set, u32 kinds, struct file *file, struct task_struct *task)
{
	u32 zero = 0;
	struct dw_prevent_scratch *s = bpf_map_lookup_elem(&prevent_scratch, &zero);
	if (!s)
		return false;
	u32 len = prevent_path(s, file, task);
	if (!len) {
		stat_inc(DW_STAT_PREVENT_PATH_LONG);
		return false;
	}
	s->key.exc_set = exc_set;
	s->key.prefixlen = 32 + 8 * len;
	u32 *allowed = bpf_map_lookup_elem(&prevent_exceptions, &s->key);
	/* Every kind of this exec must be excepted: an exception for new
	 * binaries does not let an unlinked one run. */
	return allowed && (kinds & ~*allowed) == 0;
}

/*
 * The decision. Returns the DW_EXEC_* outcome bits for the record: 0 when
 * the exec runs, PREVENTED (stop it), or WOULD_PREVENT (dry run). The caller
 * stops the exec the way its hook can.
 */
static __always_inline u32 prevent_decide(struct task_struct *task, struct file *file, u32 flags, u16 script_flags,
					  u32 host_mnt_ns, u32 host_pid_ns)
{
	u32 zero = 0;
	struct dw_prevent_config *cfg = bpf_map_lookup_elem(&prevent_config, &zero);
	if (!cfg || !cfg->enabled || !host_mnt_ns)
		return 0;
	/* Host tasks, and runtimes before they enter the container. */
	if (BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum) == host_mnt_ns)
		return 0;
	u32 kinds = drift_kinds(file, flags, script_flags);
	if (!kinds)
		return 0;
	u64 cgid = bpf_get_current_cgroup_id();
	struct dw_prevent_container *c = bpf_map_lookup_elem(&prevent_containers, &cgid);
	/* A cgroup nobody described is a container only with its own pid
	 * namespace too: a private mount namespace alone is what systemd gives
	 * PrivateTmp= services, which run host binaries from writable disks. */
	if (!c) {
		unsigned int level = 0;
		if (BPF_CORE_READ(task_pid_ns(task, &level), ns.inum) == host_pid_ns)
			return 0;
	}
	u32 stop = kinds & (c ? c->kinds : cfg->unknown_kinds);
	if (!stop)
		return 0;
	u32 exc_set = c ? c->exc_set : cfg->unknown_exc_set;
	if (exc_set && prevent_excepted(exc_set, stop, file, task)) {
		stat_inc(DW_STAT_PREVENT_EXCEPTED);
		return 0;
	}
	if (cfg->dry_run) {
		stat_inc(DW_STAT_WOULD_PREVENT);
		return DW_EXEC_WOULD_PREVENT;
	}
	return DW_EXEC_PREVENTED;
}

/*
 * The #! script's own file at sched_process_exec, where no bprm_check hook
 * saw it. binfmt_script swapped bprm->file for the interpreter and dropped
 * the script with fput(), which defers the release to task_work: until the
 * task returns to user space the struct file is intact on current's
 * task_works list, queued with ____fput (its callback field is f_task_work,
 * f_rcuhead or f_u.fu_rcuhead, by kernel and backport). The list is empty when execve
 * starts (it runs on every return to user space) and files released later
 * in the same exec (close-on-exec descriptors, the old mm's executable, the
 * ELF interpreter) are queued in front of the script: it is the oldest file
 * there, and open_exec() marked it __FMODE_EXEC in f_flags. Found by BTF (which field holds the callback) and kallsyms
 * (____fput); where either is missing, NULL, and scripts are judged where a
 * hook sees them (counted: prevent_script_unseen).
 */
struct callback_head___dw {
	struct callback_head___dw *next;
	void *func;
} __attribute__((preserve_access_index));

struct task_struct___tw {
	struct callback_head___dw *task_works;
} __attribute__((preserve_access_index));

struct file___tw { /* >= 6.7: in an anonymous union */
	struct callback_head___dw f_task_work;
	unsigned int f_flags;
} __attribute__((preserve_access_index));

struct file___rcu { /* in an anonymous union, where distributions backported it */
	struct callback_head___dw f_rcuhead;
} __attribute__((preserve_access_index));

struct file___fu { /* before: the union f_u, fu_rcuhead */
	union {
		struct callback_head___dw fu_rcuhead;
	} f_u;
} __attribute__((preserve_access_index));

#define DW_O_FMODE_EXEC 0x20 /* __FMODE_EXEC: open_exec() sets it in f_flags */

extern const void ____fput __ksym __weak;

#define DW_TASK_WORKS_MAX 64

static __always_inline struct file *script_file_at_exec(struct task_struct *task)
{
	if (!&____fput)
		return NULL;
	long off;
	if (bpf_core_field_exists(struct file___tw, f_task_work))
		off = bpf_core_field_offset(struct file___tw, f_task_work);
	else if (bpf_core_field_exists(struct file___rcu, f_rcuhead))
		off = bpf_core_field_offset(struct file___rcu, f_rcuhead);
	else if (bpf_core_field_exists(struct file___fu, f_u))
		off = bpf_core_field_offset(struct file___fu, f_u);
	else
		return NULL;
	struct callback_head___dw *cb = BPF_CORE_READ((struct task_struct___tw *)task, task_works);
	struct file___tw *script = NULL;
	for (int i = 0; i < DW_TASK_WORKS_MAX && cb; i++) {
		if (BPF_CORE_READ(cb, func) == (void *)&____fput)
			script = (void *)cb - off; /* the last one seen is the oldest */
		cb = BPF_CORE_READ(cb, next);
	}
	/* A list longer than the walk hides the oldest entry; a file not
	 * opened for exec is not the script. */
	if (cb || !script || !(BPF_CORE_READ(script, f_flags) & DW_O_FMODE_EXEC))
		return NULL;
	return (struct file *)script;
}

/* At sched_process_exec: kill before the first instruction. Where the LSM
 * hook runs, it refused this exec already unless the maps changed between
 * the two hooks (a reload); then the newer answer holds. */
/*
 * At sched_process_exec: decide, and kill before the first instruction.
 * Returns the outcome bits, and in bits 32-47 the script flags the decision
 * was made on. A global function: the verifier checks it once on its own
 * instead of in every state of the exec program (inlined, Linux 6.1's
 * verifier gave up at its million-instruction limit).
 */
__noinline long dw_prevent_at_exec(u64 task_ptr, u64 file_ptr, u32 flags, u32 script_flags)
{
	struct task_struct *task = (struct task_struct *)task_ptr;
	struct file *file = (struct file *)file_ptr;
	u32 zero = 0;
	struct dw_prevent_config *cfg = bpf_map_lookup_elem(&prevent_config, &zero);
	if (!cfg || !cfg->enabled)
		return 0; /* off: not even the script lookup */
	/* A script no hook saw: judge it by its own file (layer and exception
	 * path). The exec program may have its flags from the same walk
	 * (DW_SCRIPT_DEFERRED), but the exception path needs the file. */
	u16 sflags = (u16)script_flags;
	if ((flags & DW_FILE_SCRIPT) && (!(sflags & DW_SCRIPT_KNOWN) || (sflags & DW_SCRIPT_DEFERRED))) {
		struct file *s = script_file_at_exec(task);
		if (s) {
			struct dentry *d = BPF_CORE_READ(s, f_path.dentry);
			struct inode *i = BPF_CORE_READ(s, f_inode);
			struct super_block *sb = BPF_CORE_READ(i, i_sb);
			u32 sf = file_flags(d, i, sb, (u32)BPF_CORE_READ(sb, s_magic), BPF_CORE_READ(i, i_nlink));
			sflags = (u16)(DW_SCRIPT_KNOWN | DW_SCRIPT_DEFERRED | (sf & DW_SCRIPT_FILE_MASK));
			file = s;
		} else {
			stat_inc(DW_STAT_PREVENT_SCRIPT_UNSEEN);
		}
	}
	u32 out = prevent_decide(task, file, flags, sflags, cfg_host_mnt_ns, cfg_host_pid_ns);
	if (!out)
		return 0;
	/* The record says what the decision was made on: a stopped script
	 * leaves nothing for user space to look up later. */
	long with_script = (long)sflags << 32;
	if (out & DW_EXEC_WOULD_PREVENT)
		return with_script | out;
	if (bpf_send_signal(DW_SIGKILL)) {
		stat_inc(DW_STAT_PREVENT_FAILED);
		return 0;
	}
	stat_inc(DW_STAT_PREVENTED);
	return with_script | out;
}

/* The exec program's side: outcome bits into the record, and the script
 * flags the kernel decided on. */
static __always_inline u32 prevent_at_exec(struct task_struct *task, struct file *file, u32 flags, u16 *script_flags)
{
	long r = dw_prevent_at_exec((u64)task, (u64)file, flags, *script_flags);
	if (r)
		*script_flags = (u16)(r >> 32);
	return (u32)r;
}

static __always_inline void emit_exec(struct task_struct *task, struct linux_binprm *bprm, struct file *file,
				      u32 flags, u16 script_flags, bool with_argv);

/*
 * BPF-LSM: refuse the exec; execve returns -EPERM and the caller goes on.
 * Runs in every round of the binary handlers. In the first round of a #!
 * script the file is the script (judged as a script, not as a binary); in
 * later rounds it is the interpreter. A refused exec never reaches
 * sched_process_exec, so its record is sent from here.
 */
static __always_inline int prevent_bprm_check(struct linux_binprm *bprm, u32 host_mnt_ns, u32 host_pid_ns)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *file = BPF_CORE_READ(bprm, file);
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct super_block *sb = BPF_CORE_READ(inode, i_sb);
	u32 flags = file_flags(dentry, inode, sb, (u32)BPF_CORE_READ(sb, s_magic), BPF_CORE_READ(inode, i_nlink));
	u16 script_flags = 0;
	char magic[2] = {};
	bpf_probe_read_kernel(magic, sizeof(magic), &bprm->buf);
	if (magic[0] == '#' && magic[1] == '!') {
		script_flags = (u16)(DW_SCRIPT_KNOWN | (flags & DW_SCRIPT_FILE_MASK));
		flags = DW_FILE_SCRIPT;
	} else if (BPF_CORE_READ(bprm, interp) != BPF_CORE_READ(bprm, filename)) {
		flags |= DW_FILE_SCRIPT; /* an interpreter: its script was judged in the first round */
	}
	if (!(prevent_decide(task, file, flags, script_flags, host_mnt_ns, host_pid_ns) & DW_EXEC_PREVENTED))
		return 0;
	stat_inc(DW_STAT_DENIED);
	emit_exec(task, bprm, file, flags | DW_EXEC_DENIED, script_flags, false);
	return -DW_EPERM;
}

#endif
