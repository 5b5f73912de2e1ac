/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Path of the executed file as the process sees it. bpf_d_path() is not
 * available to raw tracepoints, so we walk the dentry chain ourselves, up to
 * the task's root (for a container: its root filesystem), crossing mounts
 * through struct mount. Components are stored leaf first; user space reverses
 * them, which keeps every write here at an increasing, bounded offset.
 */
#ifndef DRIFTWATCH_PATH_H
#define DRIFTWATCH_PATH_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "events.h"
#include "maps.h"
#include "task.h"

#define DW_NAME_MAX 256 /* NAME_MAX + NUL */

struct dw_path_result {
	u32 len;
	u32 depth;
	bool truncated;
};

static __always_inline struct mount *real_mount(struct vfsmount *vfsmnt)
{
	return (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt);
}

/*
 * file and task are BTF pointers when btf (see DW_READ). The dentry chain is
 * then walked with direct loads; a mount crossing reads struct mount through
 * probes (it sits before the vfsmount the verifier knows), and the walk goes
 * on with probes from there (direct turns false: a known constant on each
 * path the verifier follows).
 */
static __always_inline struct dw_path_result put_path_of(bool btf, char *data, u32 start, struct file *file,
							struct task_struct *task)
{
	struct dw_path_result r = { .truncated = true };
	struct dentry *root_dentry = DW_READ(btf, task, fs, root.dentry);
	struct vfsmount *root_mnt = DW_READ(btf, task, fs, root.mnt);
	struct dentry *dentry = DW_READ(btf, file, f_path.dentry);
	struct vfsmount *vfsmnt = DW_READ(btf, file, f_path.mnt);
	bool direct = btf;
	u32 off = start;

	for (int i = 0; i < DW_MAX_PATH_DEPTH; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt) {
			r.truncated = false;
			break;
		}
		/* At the root of a mount: continue from where it is mounted. Done
		 * inside the same iteration so every iteration has one way on,
		 * which keeps the verifier's state count linear. */
		if (dentry == DW_READ(direct, vfsmnt, mnt_root)) {
			struct mount *mnt = real_mount(vfsmnt);
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
			if (parent == mnt) { /* top of this mount namespace */
				r.truncated = false;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			vfsmnt = (void *)parent + bpf_core_field_offset(struct mount, mnt);
			direct = false;
			if (dentry == root_dentry && vfsmnt == root_mnt) {
				r.truncated = false;
				break;
			}
		}
		u32 used = off - start;
		if (used >= DW_MAX_PATH - DW_NAME_MAX)
			break;
		long n = bpf_probe_read_kernel_str(&data[off & DW_SCRATCH_MASK], DW_NAME_MAX,
						   DW_READ(direct, dentry, d_name.name));
		if (n <= 0)
			break;
		off += n;
		r.depth++;
		struct dentry *parent = DW_READ(direct, dentry, d_parent);
		if (parent == dentry) { /* root of a pseudo filesystem (memfd, pipe) */
			r.truncated = false;
			break;
		}
		dentry = parent;
	}
	r.len = off - start;
	return r;
}

static __always_inline struct dw_path_result put_path(char *data, u32 start, struct file *file,
						     struct task_struct *task)
{
	return put_path_of(false, data, start, file, task);
}

#endif
