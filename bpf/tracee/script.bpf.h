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
 * LSMs; there it also refuses drifted execs, see prevent.bpf.h) and fentry
 * (needs ftrace direct calls; observes only). Where neither loads, the
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
 * The script's flags without a bprm_check hook: its struct file is still on
 * the exec's deferred-fput list at sched_process_exec (script_file_at_exec
 * in prevent.bpf.h says why and how it is found). Where it is not found the
 * caller counts DW_STAT_SCRIPT_UNSEEN and user space looks the script up.
 * A global function: the verifier checks it once on its own instead of
 * inside every path of sched_process_exec (the walk times the overlay
 * checks would otherwise exceed the complexity limit).
 */
#define DW_S_IFMT 00170000
#define DW_S_IFREG 0100000

__noinline int script_flags_deferred(u64 task_addr)
{
	struct file *file = script_file_at_exec((struct task_struct *)task_addr);
	if (!file)
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
	struct linux_binprm *bprm = (struct linux_binprm *)ctx[0];
	script_check(bprm);
	return prevent_bprm_check(bprm, cfg_host_mnt_ns, cfg_host_pid_ns); /* 0, or -EPERM for a drifted exec */
}

SEC("fentry/security_bprm_check")
int fentry_bprm_check(u64 *ctx)
{
	script_check((struct linux_binprm *)ctx[0]);
	return 0;
}

#endif
