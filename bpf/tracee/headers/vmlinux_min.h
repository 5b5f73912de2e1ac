/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The kernel types driftwatch reads, declared with only the fields we touch.
 * Every struct is preserve_access_index, so each field access is a CO-RE
 * relocation resolved against the running kernel's BTF (and the overlay
 * module's BTF) at load time. Never take sizeof() of these: they are trimmed.
 * Use bpf_core_type_size()/bpf_core_field_offset() where a size is needed.
 *
 * Types whose layout changed across kernels come in "___flavor" variants
 * (libbpf strips the suffix when matching) and are chosen at load time with
 * bpf_core_field_exists(), never with a kernel version check.
 */
#ifndef DRIFTWATCH_VMLINUX_MIN_H
#define DRIFTWATCH_VMLINUX_MIN_H

#include <linux/types.h>
#include <linux/bpf.h>

typedef _Bool bool;
enum { false = 0, true = 1 };
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s64 s64;

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct qstr {
	union {
		struct {
			__u32 hash;
			__u32 len;
		};
		__u64 hash_len;
	};
	const unsigned char *name;
};

struct user_namespace {
	int level; /* 0: the initial user namespace */
};

struct super_block {
	__u32 s_dev;
	unsigned long s_magic;
	struct user_namespace *s_user_ns; /* the user namespace it was mounted in */
	int s_stack_depth;                /* 1 + the deepest of the filesystems it stacks on */
};

struct timespec64 {
	__s64 tv_sec;
	long tv_nsec;
};

struct inode {
	unsigned short i_mode;
	struct super_block *i_sb;
	unsigned long i_ino;
	union {
		const unsigned int i_nlink;
		unsigned int __i_nlink;
	};
};

/* ctime moved three times; each flavor names one layout. */
struct inode___ctime_sec { /* 6.11+ */
	__s64 i_ctime_sec;
	__u32 i_ctime_nsec;
};
struct inode___ctime_priv { /* 6.6 - 6.10 */
	struct timespec64 __i_ctime;
};
struct inode___ctime_old { /* < 6.6 */
	struct timespec64 i_ctime;
};

struct dentry {
	unsigned int d_flags;
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
	struct super_block *d_sb;
	void *d_fsdata;
};

struct vfsmount {
	struct dentry *mnt_root;
	struct super_block *mnt_sb;
	int mnt_flags;
};

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
};

struct linux_binprm {
	struct file *file;
	const char *filename;
	const char *interp;
	char buf[256]; /* first bytes of the file (BINPRM_BUF_SIZE; 128 before 5.1: we read 2) */
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct fs_struct {
	struct path root;
};

struct ns_common {
	unsigned int inum;
};

struct pid_namespace {
	struct ns_common ns;
};

struct mnt_namespace {
	struct ns_common ns;
};

struct nsproxy {
	struct mnt_namespace *mnt_ns;
};

struct upid {
	int nr;
	struct pid_namespace *ns;
};

struct pid {
	unsigned int level;
	struct upid numbers[1];
};

typedef struct {
	__u32 val;
} kuid_t;
typedef struct {
	__u32 val;
} kgid_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	struct file *exe_file;
};

struct kernfs_node {
	const char *name;
};
struct kernfs_node___new { /* 6.15+ */
	struct kernfs_node *__parent;
};
struct kernfs_node___old {
	struct kernfs_node *parent;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
};

struct css_set {
	struct cgroup_subsys_state *subsys[1]; /* indexed by enum cgroup_subsys_id */
	struct cgroup *dfl_cgrp;
};

enum cgroup_subsys_id {
	memory_cgrp_id = 4,
	pids_cgrp_id = 11,
};

struct task_struct {
	int pid;
	int tgid;
	__u64 start_time;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct pid *thread_pid;
	const struct cred *cred;
	char comm[16];
	struct fs_struct *fs;
	struct nsproxy *nsproxy;
	struct mm_struct *mm;
	struct css_set *cgroups;
	struct files_struct *files;
};

/* overlayfs (fs/overlayfs/ovl_entry.h), often a module: guard every use
 * with bpf_core_type_exists() so the object loads before overlay does. */
struct ovl_inode {
	struct inode vfs_inode;
	struct dentry *__upperdentry;
};

/* One lower layer of an entry; before 5.x the first field was a vfsmount,
 * since then an ovl_layer: only .dentry is read, by name. */
struct ovl_path {
	struct dentry *dentry;
};

/* >= 6.5 (upstream 0af950f57fef, backported by some distros to 5.14):
 * d_fsdata holds the entry flags directly, ovl_inode->oe holds the lowers. */
struct ovl_entry___fsdata {
	unsigned int __numlower;
	struct ovl_path __lowerstack[0];
};
struct ovl_inode___fsdata {
	struct ovl_entry___fsdata *oe;
};

/* < 6.5: d_fsdata points to struct ovl_entry { flags; numlower; ... }. */
struct ovl_entry___old {
	union {
		struct {
			unsigned long flags;
		};
	};
	unsigned int numlower;
	struct ovl_path lowerstack[0];
};

enum ovl_entry_flag {
	OVL_E_UPPER_ALIAS = 0,
};

#pragma clang attribute pop

#endif
