/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The layer of a #! script, seen where the script itself is the file.
 *
 * At sched_process_exec bprm->file is already the interpreter: binfmt_script
 * swapped it. The script file is only visible to security_bprm_check, which
 * runs once per binary handler round: first with the file execve named, then
 * with the interpreter. The first round of a file starting with "#!" records
 * that file's flags, keyed by tgid (stable across exec) and stamped with the
 * bprm, so sched_process_exec of the same exec picks them up and a failed
 * exec's leftover is never mistaken for a later one's.
 *
 * Two attachments of the same code: BPF-LSM (needs "bpf" among the active
 * LSMs) and fentry (needs ftrace direct calls). Where neither loads, the
 * loader leaves both out and sched_process_exec finds the script file on
 * the exec's deferred-release list (script_flags_deferred below); only
 * where that fails too does user space look the script up in the
 * container's overlay (racy: see README, Scripts).
 */
#ifndef DRIFTWATCH_SCRIPT_BPF_H
#define DRIFTWATCH_SCRIPT_BPF_H

struct dw_script_file {
	u64 bprm;  /* the exec it belongs to */
	u32 flags; /* DW_FILE_* of the script */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096); /* execs in flight; LRU bounds leftovers of failed execs */
	__type(key, u32);
	__type(value, struct dw_script_file);
} script_files SEC(".maps");

static __always_inline void script_check(struct linux_binprm *bprm)
{
	char magic[2] = {};
	bpf_probe_read_kernel(magic, sizeof(magic), &bprm->buf);
	if (magic[0] != '#' || magic[1] != '!')
		return; /* not a script: nothing to remember (the common case) */
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct dw_script_file *known = bpf_map_lookup_elem(&script_files, &tgid);
	if (known && known->bprm == (u64)bprm)
		return; /* a later round of the same exec (a #! interpreter that is a script) */
	struct file *file = BPF_CORE_READ(bprm, file);
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct super_block *sb = BPF_CORE_READ(inode, i_sb);
	u32 magic_fs = (u32)BPF_CORE_READ(sb, s_magic);
	struct dw_script_file v = {
		.bprm = (u64)bprm,
		.flags = file_flags(dentry, inode, sb, magic_fs, BPF_CORE_READ(inode, i_nlink)),
	};
	bpf_map_update_elem(&script_files, &tgid, &v, BPF_ANY);
}

/* The script's flags for this exec, once (the entry is consumed). */
static __always_inline u16 script_flags_of(struct linux_binprm *bprm, u32 tgid)
{
	struct dw_script_file *known = bpf_map_lookup_elem(&script_files, &tgid);
	if (!known)
		return 0;
	u16 out = known->bprm == (u64)bprm ? (u16)(DW_SCRIPT_KNOWN | (known->flags & DW_SCRIPT_FILE_MASK)) : 0;
	bpf_map_delete_elem(&script_files, &tgid);
	return out;
}

/*
 * The script file without a bprm_check hook. exec_binprm() drops its
 * reference to the script with fput() once binfmt_script has opened the
 * interpreter; the script's struct file held by the exec alone, so that
 * last fput() queues its release as a task_work (____fput) that only runs
 * when the task returns to user space, after sched_process_exec. Until
 * then the file is alive and reachable from current->task_works. Later
 * fput()s of the same exec (the old mm's mappings, close-on-exec fds) are
 * pushed in front of it, so the script is the oldest ____fput entry; it was
 * opened for exec, so its f_flags carry __FMODE_EXEC (a mapped library's
 * do not).
 * A typeless __ksym gives ____fput's address from kallsyms; where that is
 * hidden (0) or the list is longer than the walk, the caller counts
 * DW_STAT_SCRIPT_UNSEEN and user space looks the script up instead.
 */
extern const void ____fput __ksym __weak;

#define DW_TASK_WORK_WALK 64
#define DW_O_FMODE_EXEC 0x20 /* __FMODE_EXEC: open_exec() puts it in f_flags (f_mode's bit moved in 6.x) */
#define DW_S_IFMT 00170000
#define DW_S_IFREG 0100000

static __always_inline s64 file_task_work_offset(void)
{
	if (bpf_core_field_exists(struct file___task_work, f_task_work))
		return bpf_core_field_offset(struct file___task_work, f_task_work);
	if (bpf_core_field_exists(struct file___rcuhead, f_rcuhead))
		return bpf_core_field_offset(struct file___rcuhead, f_rcuhead);
	if (bpf_core_field_exists(struct file___f_u, f_u))
		return bpf_core_field_offset(struct file___f_u, f_u.fu_rcuhead);
	return -1;
}

/* A global function: the verifier checks it once on its own instead of
 * inside every path of sched_process_exec (the walk times the overlay
 * checks would otherwise exceed the complexity limit). */
__noinline int script_flags_deferred(u64 task_addr)
{
	struct task_struct *task = (struct task_struct *)task_addr;
	unsigned long fput_fn = (unsigned long)&____fput;
	s64 off = file_task_work_offset();
	if (!fput_fn || off < 0)
		return 0;
	struct callback_head *w = BPF_CORE_READ(task, task_works);
	struct callback_head *oldest = NULL;
	for (int i = 0; i < DW_TASK_WORK_WALK && w; i++) {
		if ((unsigned long)BPF_CORE_READ(w, func) == fput_fn)
			oldest = w;
		w = BPF_CORE_READ(w, next);
	}
	if (w || !oldest)
		return 0; /* longer than the walk: the oldest entry is not known */
	struct file *file = (void *)oldest - off;
	if (!(BPF_CORE_READ(file, f_flags) & DW_O_FMODE_EXEC))
		return 0;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if ((BPF_CORE_READ(inode, i_mode) & DW_S_IFMT) != DW_S_IFREG)
		return 0;
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct super_block *sb = BPF_CORE_READ(inode, i_sb);
	u32 magic = (u32)BPF_CORE_READ(sb, s_magic);
	u32 flags = file_flags(dentry, inode, sb, magic, BPF_CORE_READ(inode, i_nlink));
	return DW_SCRIPT_KNOWN | DW_SCRIPT_DEFERRED | (flags & DW_SCRIPT_FILE_MASK);
}

SEC("lsm/bprm_check_security")
int lsm_bprm_check(u64 *ctx)
{
	script_check((struct linux_binprm *)ctx[0]);
	return 0; /* observe only: never deny */
}

SEC("fentry/security_bprm_check")
int fentry_bprm_check(u64 *ctx)
{
	script_check((struct linux_binprm *)ctx[0]);
	return 0;
}

#endif
