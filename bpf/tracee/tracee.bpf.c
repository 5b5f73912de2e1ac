// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * driftwatch kernel side: one raw tracepoint on sched_process_exec (plus,
 * where the kernel allows them, a bprm_check hook for #! scripts and a
 * syscall tracepoint for executable mappings).
 *
 * Image files (overlay lower layer) and host filesystems are counted and
 * dropped here, before any string is copied: that is nearly every exec, so
 * the common path costs one overlay check. Drift candidates get the full
 * record. Records are submitted without waking user space; the reader polls
 * on a short interval, so a wakeup is never paid per event and delivery
 * latency stays bounded by the poll interval.
 */
#include "headers/vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "headers/events.h"
#include "headers/maps.h"
#include "headers/task.h"
#include "headers/filesystem.h"
#include "headers/path.h"
#include "headers/lineage.h"
#include "headers/cgroup.h"

/*
 * The sources are GPL-2.0-only OR Apache-2.0 (SPDX line above). The kernel
 * knows no string for that pair; it only asks whether the program may use
 * GPL-only helpers, and the GPL side of the dual licence says it may.
 */
char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load; constant-folded by the verifier. */
const volatile bool cfg_emit_all = false;  /* send every exec (recording, debugging) */
const volatile __u32 cfg_ignore_tgid = 0;    /* the sensor itself */
const volatile __u32 cfg_host_mnt_ns = 0;    /* 0: no foreign-namespace checks */
const volatile __u32 cfg_host_pid_ns = 0;

/*
 * Never read. Enum constants reach BTF only through a typed object, and the
 * counters map must be keyed by a plain int, so this puts enum dw_stat into
 * the object's BTF, where the user-space contract test reads the names.
 */
const volatile enum dw_stat dw_btf_stat_names = DW_STAT_MAX;

#include "prevent.bpf.h"
#include "script.bpf.h"

/* Own mount and pid namespaces: a container, not a PrivateTmp= service. */
static __always_inline bool task_in_foreign_ns(struct task_struct *task)
{
	if (!cfg_host_mnt_ns)
		return false;
	if (BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum) == cfg_host_mnt_ns)
		return false;
	unsigned int level = 0;
	struct pid_namespace *ns = task_pid_ns(task, &level);
	return BPF_CORE_READ(ns, ns.inum) != cfg_host_pid_ns;
}

/* Copies a NUL-terminated kernel string at data[off]; returns bytes incl. NUL. */
static __always_inline u32 put_kernel_str(char *data, u32 off, const void *src, u32 max, u32 *trunc, u32 bit)
{
	long n = bpf_probe_read_kernel_str(&data[off & DW_SCRATCH_MASK], max & DW_SCRATCH_MASK, src);
	if (n <= 0) {
		data[off & DW_SCRATCH_MASK] = 0;
		return 1;
	}
	if ((u32)n == max)
		*trunc |= bit; /* filled the room: may be cut short */
	return (u32)n;
}

/* argv as laid out by execve in the new mm: NUL-separated, one read. */
static __always_inline u32 put_argv(bool btf, char *data, u32 off, struct task_struct *task, u32 *trunc)
{
	struct mm_struct *mm = DW_READ(btf, task, mm);
	unsigned long start = DW_READ(btf, mm, arg_start);
	unsigned long end = DW_READ(btf, mm, arg_end);
	u64 len = end > start ? end - start : 0;

	if (len > DW_MAX_ARGV) {
		len = DW_MAX_ARGV;
		*trunc |= DW_TRUNC_ARGV;
	}
	if (len == 0)
		return 0;
	if (bpf_probe_read_user(&data[off & DW_SCRATCH_MASK], len & (DW_MAX_ARGV * 2 - 1), (void *)start))
		return 0;
	return (u32)len;
}

/*
 * The full exec record, into the ring buffer. with_argv is false where the
 * new mm holds no arguments yet (an exec refused at bprm_check). task is the
 * current task.
 */
static __always_inline void emit_exec(struct task_struct *task, struct linux_binprm *bprm, struct file *file,
				      u32 flags, u16 script_flags, bool with_argv)
{
	u32 zero = 0;
	struct dw_exec_scratch *s = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!s) {
		stat_inc(DW_STAT_SCRATCH_MISS);
		return;
	}
	bool btf = dw_task_btf();
	struct task_struct *cur = dw_current(btf, task);
	/* After the exec (with_argv) the new mm's exe_file is bprm->file, set by
	 * the kernel before this tracepoint: the same file, as a BTF pointer.
	 * Refused at bprm_check, the mm is still the caller's. */
	bool fbtf = btf && with_argv;
	struct file *f = fbtf ? DW_READ(fbtf, cur, mm, exe_file) : file;
	struct dw_exec_event *e = &s->e;
	struct dw_task_ids ids = {};
	struct inode *inode = DW_READ(fbtf, f, f_inode);
	struct super_block *sb = DW_READ(fbtf, inode, i_sb);
	task_ids(btf, cur, &ids);

	e->hdr.kind = DW_EVENT_EXEC;
	e->hdr.version = DW_EXEC_VERSION;
	e->hdr.ktime_ns = bpf_ktime_get_boot_ns();
	e->host_pid = ids.host_pid;
	e->host_tid = ids.host_tid;
	e->host_ppid = ids.host_ppid;
	e->ns_pid = ids.ns_pid;
	e->ns_tid = ids.ns_tid;
	e->ns_ppid = ids.ns_ppid;
	e->pid_ns = ids.pid_ns;
	const struct cred *cred = DW_READ(btf, cur, cred);
	e->uid = DW_READ(btf, cred, uid.val);
	e->gid = DW_READ(btf, cred, gid.val);
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->mnt_ns = DW_READ(btf, cur, nsproxy, mnt_ns, ns.inum);
	e->inode = DW_READ(fbtf, inode, i_ino);
	e->dev = DW_READ(fbtf, sb, s_dev);
	e->mode = DW_READ(fbtf, inode, i_mode);
	e->nlink = DW_READ(fbtf, inode, i_nlink);
	e->fs_magic = (u32)DW_READ(fbtf, sb, s_magic);
	inode_ctime(inode, &e->ctime_sec, &e->ctime_nsec);
	e->file_flags = flags;
	e->script_flags = script_flags;
	e->start_time_ns = DW_READ(btf, cur, start_time);
	copy_comm(btf, e->comm, cur);

	task_lineage(btf, cur, ids.parent, e);

	u32 trunc = 0, off = 0, n;
	char *data = s->data;

	n = put_kernel_str(data, off, BPF_CORE_READ(bprm, filename), DW_MAX_FILENAME, &trunc, DW_TRUNC_FILENAME);
	e->filename_len = n;
	off += n;

	struct dw_path_result pr = fbtf ? put_path_of(true, data, off, f, cur) : put_path(data, off, file, task);
	e->path_len = pr.len;
	e->path_depth = pr.depth;
	if (pr.truncated) {
		trunc |= DW_TRUNC_PATH;
		stat_inc(DW_STAT_PATH_TRUNCATED);
	}
	off += pr.len;

	n = with_argv ? put_argv(btf, data, off, cur, &trunc) : 0;
	e->argv_len = n;
	off += n;

	const char *cg_name, *cg_parent_name;
	task_cgroup_names(btf, cur, &cg_name, &cg_parent_name);
	n = put_kernel_str(data, off, cg_name, DW_MAX_CGROUP, &trunc, DW_TRUNC_CGROUP);
	e->cgroup_len = n;
	off += n;
	n = put_kernel_str(data, off, cg_parent_name, DW_MAX_CGROUP, &trunc, DW_TRUNC_CGROUP);
	e->cgparent_len = n;
	off += n;

	e->trunc_flags = trunc;
	u32 size = sizeof(*e) + (off & DW_SCRATCH_MASK);
	e->hdr.size = size;
	/* No flags: the kernel wakes the reader only when it had caught up
	 * (the first record after the ring was empty); user space then batches. */
	if (bpf_ringbuf_output(&events, e, size, 0))
		stat_inc(DW_STAT_RINGBUF_FULL);
	else
		stat_inc(DW_STAT_EXEC_EMITTED);
}

#include "watch.bpf.h"

/*
 * binfmt_script (and binfmt_misc) replaced bprm->interp: the file is the
 * interpreter of a script named by bprm->filename. The two pointers are
 * neighbours in struct linux_binprm: one probe read of both, not two.
 */
static __always_inline bool bprm_interp_replaced(struct linux_binprm *bprm)
{
	u64 off = bpf_core_field_offset(struct linux_binprm, filename);
	if (bpf_core_field_offset(struct linux_binprm, interp) != off + sizeof(void *))
		return BPF_CORE_READ(bprm, interp) != BPF_CORE_READ(bprm, filename);
	const char *names[2] = {}; /* filename, interp */
	bpf_probe_read_kernel(names, sizeof(names), (void *)bprm + off);
	return names[1] != names[0];
}

SEC("raw_tp/sched_process_exec")
int sched_process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];

	stat_inc(DW_STAT_EXEC_SEEN);

	/* Nearly every exec stops after these reads: where the kernel has
	 * bpf_get_current_task_btf (5.11+), the exec'd file is the new mm's
	 * exe_file (set by begin_new_exec before this tracepoint) and each
	 * field is one checked load, not a probe-read call. The overlay layout
	 * facts (no overlay BTF) take scalars: probe reads there. */
	bool fbtf = dw_task_btf() && !ovl_uses_facts();
	struct file *file = fbtf ? DW_READ(fbtf, bpf_get_current_task_btf(), mm, exe_file) : BPF_CORE_READ(bprm, file);
	struct dentry *dentry = DW_READ(fbtf, file, f_path.dentry);
	struct inode *inode = DW_READ(fbtf, file, f_inode);
	struct super_block *sb = DW_READ(fbtf, inode, i_sb);
	u32 magic = (u32)DW_READ(fbtf, sb, s_magic);
	u32 nlink = DW_READ(fbtf, inode, i_nlink);
	u32 flags = file_flags(dentry, inode, sb, magic, nlink);

	/* The file is the interpreter of a #! script, whose layer user space checks. */
	bool script = bprm_interp_replaced(bprm);
	u16 script_flags = 0;
	if (script) {
		flags |= DW_FILE_SCRIPT;
		script_flags = script_flags_of(bprm, bpf_get_current_pid_tgid() >> 32);
		if (!(script_flags & DW_SCRIPT_KNOWN))
			script_flags = (u16)script_flags_deferred((u64)task);
		if (!(script_flags & DW_SCRIPT_KNOWN))
			stat_inc(DW_STAT_SCRIPT_UNSEEN);
	}
	/* A script whose own layer the bprm_check hook saw needs user space only
	 * when that layer is drift; otherwise user space must look it up. */
	bool script_open = script && (!(script_flags & DW_SCRIPT_KNOWN) ||
				      file_is_drift_candidate(script_flags & DW_SCRIPT_FILE_MASK));
	/* Only plain mounts (volumes) and scripts need the namespace check. */
	if ((script || !(flags & (DW_FILE_OVERLAY | DW_FILE_TMPFS | DW_FILE_MEMFD))) && task_in_foreign_ns(task)) {
		flags |= DW_FILE_FOREIGN_NS;
		if (BPF_CORE_READ(file, f_path.mnt, mnt_flags) & MNT_READONLY)
			flags |= DW_FILE_MNT_READONLY;
	}

	if (flags & DW_FILE_OVL_UNRESOLVED)
		stat_inc(DW_STAT_OVL_UNRESOLVED);
	if (flags & DW_FILE_OVL_NESTED) {
		stat_inc(DW_STAT_OVL_NESTED);
		if (flags & DW_FILE_OVL_UNFOLLOWED)
			stat_inc(DW_STAT_OVL_UNFOLLOWED);
	}
	if (!file_is_drift_candidate(flags) && !(script_open && (flags & DW_FILE_FOREIGN_NS))) {
		u32 watch = watch_image_exec(task, dentry);
		if (watch) {
			flags |= watch;
		} else if (!cfg_emit_all) {
			stat_inc(DW_STAT_EXEC_FILTERED);
			return 0;
		} else {
			flags |= DW_FILE_EMITTED_ALL;
		}
	} else {
		flags |= watch_drift_exec(dentry);
	}
	u32 tgid = BPF_CORE_READ(task, tgid);
	if (cfg_ignore_tgid && tgid == cfg_ignore_tgid) {
		stat_inc(DW_STAT_EXEC_FILTERED);
		return 0;
	}
	/* Prevention's global function takes the file as a scalar. */
	if (fbtf)
		file = BPF_CORE_READ(bprm, file);
	flags |= prevent_at_exec(task, file, flags, &script_flags);
	emit_exec(task, bprm, file, flags, script_flags, true);
	return 0;
}

#include "mmap.bpf.h"
#include "bench.bpf.h"
