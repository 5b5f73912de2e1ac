/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Code mapped executable from a drifted file: a dropped library pulled in by
 * LD_PRELOAD, or `ld.so /tmp/x` running a dropped binary without exec'ing
 * it. The file is classified exactly like an executed file, and only drift
 * candidates are sent.
 *
 * Three ways in, one loaded at most (the loader picks):
 *  - lsm/mmap_file and fentry/security_mmap_file see the struct file and cost
 *    only the mmap calls themselves;
 *  - the sys_enter_mmap tracepoint (opt-in) works everywhere, but enabling
 *    any syscall tracepoint sends every syscall of every task through the
 *    slow path (measured: see bench/BENCHMARKS.md), so it is never the default.
 */
#ifndef DRIFTWATCH_MMAP_BPF_H
#define DRIFTWATCH_MMAP_BPF_H

#define PROT_EXEC 0x4

/* Format of syscalls/sys_enter_mmap (see its tracefs format file). */
struct sys_enter_mmap_args {
	__u64 common;
	int syscall_nr;
	int pad;
	unsigned long addr;
	unsigned long len;
	unsigned long prot;
	unsigned long flags;
	unsigned long fd;
	unsigned long off;
};

struct dw_mmap_scratch {
	struct dw_mmap_event e;
	char data[2 * DW_SCRATCH_HALF];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct dw_mmap_scratch);
} mmap_scratch SEC(".maps");

static __always_inline struct file *task_fd_file(struct task_struct *task, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

static __always_inline void exec_mapping(struct task_struct *task, struct file *file, unsigned long prot,
					 unsigned long mmap_flags)
{
	stat_inc(DW_STAT_MMAP_EXEC_SEEN);
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (cfg_ignore_tgid && tgid == cfg_ignore_tgid)
		return;
	if (!file)
		return;
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct super_block *sb = BPF_CORE_READ(inode, i_sb);
	u32 magic = (u32)BPF_CORE_READ(sb, s_magic);
	u32 nlink = BPF_CORE_READ(inode, i_nlink);
	u32 flags = file_flags(dentry, inode, sb, magic, nlink);
	/* Volumes are left to exec: libraries on them are ordinary (e.g. /opt). */
	if (!(flags & DW_FILE_OVERLAY) && !(flags & (DW_FILE_MEMFD | DW_FILE_TMPFS | DW_FILE_UNLINKED)))
		return;
	/* An image library mapped through a nested overlay (a container in a
	 * container) is not a drifted mapping; what is behind it decides. */
	if (!file_is_drift_candidate(flags & ~DW_FILE_OVL_NESTED) && !(flags & DW_FILE_OVL_UNFOLLOWED))
		return;

	u32 zero = 0;
	struct dw_mmap_scratch *s = bpf_map_lookup_elem(&mmap_scratch, &zero);
	if (!s) {
		stat_inc(DW_STAT_SCRATCH_MISS);
		return;
	}
	struct dw_mmap_event *e = &s->e;
	unsigned int level = 0;
	struct pid_namespace *pidns = task_pid_ns(task, &level);
	e->hdr.kind = DW_EVENT_MMAP_EXEC;
	e->hdr.version = DW_MMAP_VERSION;
	e->hdr.ktime_ns = bpf_ktime_get_boot_ns();
	e->host_pid = tgid;
	e->host_tid = (u32)bpf_get_current_pid_tgid();
	e->ns_pid = task_ns_pid(BPF_CORE_READ(task, group_leader), level);
	e->pid_ns = BPF_CORE_READ(pidns, ns.inum);
	e->uid = (u32)bpf_get_current_uid_gid();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->inode = BPF_CORE_READ(inode, i_ino);
	e->dev = BPF_CORE_READ(sb, s_dev);
	e->mode = BPF_CORE_READ(inode, i_mode);
	e->nlink = nlink;
	e->fs_magic = magic;
	e->file_flags = flags;
	e->prot = prot;
	e->mmap_flags = mmap_flags;
	e->start_time_ns = BPF_CORE_READ(task, start_time);
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	inode_ctime(inode, &e->ctime_sec, &e->ctime_nsec);
	e->pad = 0;

	u32 trunc = 0, off = 0, n;
	char *data = s->data;
	struct dw_path_result pr = put_path(data, off, file, task);
	e->path_len = pr.len;
	e->path_depth = pr.depth;
	if (pr.truncated)
		trunc |= DW_TRUNC_PATH;
	off += pr.len;
	struct kernfs_node *kn = task_cgroup_kn(task);
	n = put_kernel_str(data, off, BPF_CORE_READ(kn, name), DW_MAX_CGROUP, &trunc, DW_TRUNC_CGROUP);
	e->cgroup_len = n;
	off += n;
	n = put_kernel_str(data, off, BPF_CORE_READ(kernfs_parent(kn), name), DW_MAX_CGROUP, &trunc, DW_TRUNC_CGROUP);
	e->cgparent_len = n;
	off += n;
	e->trunc_flags = trunc;
	u32 size = sizeof(*e) + (off & DW_SCRATCH_MASK);
	e->hdr.size = size;
	/* Wakes the reader only for the first record after the ring was empty. */
	if (bpf_ringbuf_output(&events, e, size, 0))
		stat_inc(DW_STAT_RINGBUF_FULL);
	else
		stat_inc(DW_STAT_MMAP_EXEC_EMITTED);
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int sys_enter_mmap(struct sys_enter_mmap_args *ctx)
{
	if (!(ctx->prot & PROT_EXEC) || (long)ctx->fd < 0)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	exec_mapping(task, task_fd_file(task, (int)ctx->fd), ctx->prot, ctx->flags);
	return 0;
}

/* mmap_file(file, reqprot, prot, flags, ret): prot is what will be mapped
 * (READ_IMPLIES_EXEC applied); file is NULL for anonymous memory. */
SEC("lsm/mmap_file")
int lsm_mmap_file(u64 *ctx)
{
	struct file *file = (struct file *)ctx[0];
	unsigned long prot = ctx[2];
	if (file && (prot & PROT_EXEC))
		exec_mapping((struct task_struct *)bpf_get_current_task(), file, prot, ctx[3]);
	return 0; /* observe only: never deny */
}

/* security_mmap_file(file, prot, flags): prot as the caller asked. */
SEC("fentry/security_mmap_file")
int fentry_mmap_file(u64 *ctx)
{
	struct file *file = (struct file *)ctx[0];
	unsigned long prot = ctx[1];
	if (file && (prot & PROT_EXEC))
		exec_mapping((struct task_struct *)bpf_get_current_task(), file, prot, ctx[2]);
	return 0;
}

#endif
