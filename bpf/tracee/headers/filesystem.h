/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Facts about the executed file: which filesystem, which overlay layer. */
#ifndef DRIFTWATCH_FILESYSTEM_H
#define DRIFTWATCH_FILESYSTEM_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "events.h"

#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#define TMPFS_MAGIC           0x01021994
#define HUGETLBFS_MAGIC       0x958458f6

/*
 * Overlay layer of the executed file.
 *
 * "In the upper layer" needs two facts: the overlay inode has an upper dentry
 * (ovl_inode->__upperdentry, found by CO-RE from ovl_inode's real layout, not
 * by adding a compiled-in sizeof(struct inode)) and the dentry carries
 * OVL_E_UPPER_ALIAS. Where the flag lives depends on the kernel:
 *   >= 6.5  d_fsdata is the flag word itself, lowers hang off ovl_inode->oe
 *   <  6.5  d_fsdata points to struct ovl_entry { flags; numlower; ... }
 * We pick the layout by which fields exist in the running kernel's BTF, so a
 * distro backport of the 6.5 layout to an older version is read correctly.
 *
 * HAS_LOWER separates a file created in the container (no lower entry) from
 * an image file that was copied up (its lower is still known to overlay).
 */
static __always_inline struct ovl_inode *ovl_inode_of(struct inode *inode)
{
	return (void *)inode - bpf_core_field_offset(struct ovl_inode, vfs_inode);
}

/*
 * Without overlay's BTF (Linux 5.10 has no module BTF; kernels built without
 * CONFIG_DEBUG_INFO_BTF_MODULES; overlay loaded after us), overlay is read
 * through layout facts that hold from 5.x to 6.x:
 *   - struct ovl_inode embeds vfs_inode and __upperdentry follows it, so the
 *     upper dentry is at the inode plus sizeof(struct inode), a size taken
 *     from vmlinux BTF; in >= 6.5 the next word is ovl_inode->oe;
 *   - OVL_E_UPPER_ALIAS is bit 0 of the entry flags;
 *   - d_fsdata before 6.5 points to struct ovl_entry { union { flags;
 *     struct rcu_head; }; unsigned numlower; struct ovl_path lowerstack[]; }
 *     and from 6.5 on is the flag word itself. A kernel pointer there says
 *     the first, a small number the second: the kernel's own data picks the
 *     layout, not a version number.
 * Every read is cross-checked against what it must imply (an upper dentry is
 * on another filesystem with the same file mode; an upper alias has an upper
 * dentry; a lower stack is short); a fact that does not hold makes the file
 * UNRESOLVED (layer UNKNOWN, counted), never LOWER.
 */
const volatile bool cfg_ovl_layout_facts = true;  /* read overlay by layout facts where its BTF is absent */
const volatile bool cfg_ovl_force_facts = false;  /* ... even where BTF exists (tests prove the facts on it) */

/* struct rcu_head is a #define for struct callback_head: BTF knows only the latter. */
struct callback_head___dwovl {
	void *next;
	void *func;
} __attribute__((preserve_access_index));

#define DW_KERNEL_ADDR_MIN  0xffff000000000000UL /* the kernel half on x86-64 and arm64 */
#define DW_OVL_FLAGS_MAX    0xffffUL             /* far above the few entry flag bits */
#define DW_OVL_MAX_STACK    500                  /* overlay's own limit on lower layers */

static __always_inline bool dw_kernel_ptr(const void *p)
{
	return (unsigned long)p >= DW_KERNEL_ADDR_MIN;
}

static __always_inline bool ovl_uses_facts(void)
{
	return cfg_ovl_force_facts || !bpf_core_type_exists(struct ovl_inode);
}

static __always_inline void *ovl_fact_word(const void *base, u64 offset)
{
	void *word = NULL;
	if (bpf_probe_read_kernel(&word, sizeof(word), base + offset))
		return (void *)1; /* unreadable: fails every check below */
	return word;
}

/*
 * The facts are read as global functions: the verifier checks each once, not
 * at every overlay level of every hook that inlines it (Linux 5.10's verifier
 * refused the inlined whole). Global functions take scalars, so the kernel
 * pointers travel as u64.
 *
 * want_count 0: the first lower dentry, or 0. want_count 1: the number of
 * lower layers (> DW_OVL_MAX_STACK: the facts do not hold here).
 */
__noinline u64 dw_ovl_facts_lower(u64 dentry_addr, u64 inode_addr, u64 want_count)
{
	struct dentry *dentry = (void *)dentry_addr;
	struct inode *inode = (void *)inode_addr;
	u32 numlower = 0;
	u64 inode_size = bpf_core_type_size(struct inode);
	void *fsdata = BPF_CORE_READ(dentry, d_fsdata);
	void *oe;
	u64 stack; /* offset of lowerstack[] in the entry */
	if (dw_kernel_ptr(fsdata)) {
		oe = fsdata;
		u64 rcu = bpf_core_type_size(struct callback_head___dwovl);
		if (!rcu) /* not in this kernel's BTF: the offsets are unknown */
			return want_count ? DW_OVL_MAX_STACK + 1 : 0;
		numlower = (u32)(unsigned long)ovl_fact_word(oe, rcu);
		stack = rcu + sizeof(void *);
	} else {
		oe = ovl_fact_word(inode, inode_size + sizeof(void *));
		if (!oe)
			return 0;
		if (!dw_kernel_ptr(oe))
			return want_count ? DW_OVL_MAX_STACK + 1 : 0;
		numlower = (u32)(unsigned long)ovl_fact_word(oe, 0);
		stack = sizeof(void *);
	}
	if (want_count)
		return numlower;
	if (numlower == 0 || numlower > DW_OVL_MAX_STACK)
		return 0;
	/* struct ovl_path { layer; dentry; } */
	struct dentry *lower = ovl_fact_word(oe, stack + sizeof(void *));
	return dw_kernel_ptr(lower) ? (u64)lower : 0;
}

__noinline u32 dw_ovl_facts_flags(u64 dentry_addr, u64 inode_addr)
{
	struct dentry *dentry = (void *)dentry_addr;
	struct inode *inode = (void *)inode_addr;
	u32 flags = DW_FILE_OVERLAY | DW_FILE_OVL_LAYOUT_FACTS;
	if (!cfg_ovl_layout_facts)
		return flags | DW_FILE_OVL_UNRESOLVED;

	struct dentry *upper = ovl_fact_word(inode, bpf_core_type_size(struct inode));
	void *fsdata = BPF_CORE_READ(dentry, d_fsdata);
	unsigned long entry_flags;
	if (dw_kernel_ptr(fsdata)) {
		flags |= DW_FILE_OVL_LAYOUT_ENTRY;
		entry_flags = (unsigned long)ovl_fact_word(fsdata, 0);
	} else if ((unsigned long)fsdata <= DW_OVL_FLAGS_MAX) {
		flags |= DW_FILE_OVL_LAYOUT_FSDATA;
		entry_flags = (unsigned long)fsdata;
	} else {
		return flags | DW_FILE_OVL_UNRESOLVED;
	}
	bool alias = entry_flags & 1UL; /* OVL_E_UPPER_ALIAS */
	if (!upper) {
		/* An image file; an upper alias without an upper dentry means the
		 * offset is wrong on this kernel. */
		return alias ? flags | DW_FILE_OVL_UNRESOLVED : flags;
	}
	if (!dw_kernel_ptr(upper))
		return flags | DW_FILE_OVL_UNRESOLVED;
	/* An upper dentry is a dentry of the upper filesystem for this very file. */
	struct inode *upper_inode = BPF_CORE_READ(upper, d_inode);
	struct super_block *upper_sb = BPF_CORE_READ(upper, d_sb);
	if (!upper_inode || upper_sb == BPF_CORE_READ(dentry, d_sb) ||
	    BPF_CORE_READ(upper_inode, i_mode) != BPF_CORE_READ(inode, i_mode) ||
	    (u32)BPF_CORE_READ(upper_sb, s_magic) == OVERLAYFS_SUPER_MAGIC)
		return flags | DW_FILE_OVL_UNRESOLVED;
	flags |= DW_FILE_OVL_UPPER_DENTRY;
	if (alias)
		flags |= DW_FILE_OVL_UPPER_ALIAS;
	u64 numlower = dw_ovl_facts_lower(dentry_addr, inode_addr, 1);
	if (numlower > DW_OVL_MAX_STACK)
		return flags | DW_FILE_OVL_UNRESOLVED;
	if (numlower > 0)
		flags |= DW_FILE_OVL_HAS_LOWER;
	return flags;
}

static __always_inline u32 overlay_file_flags(struct dentry *dentry, struct inode *inode)
{
	u32 flags = DW_FILE_OVERLAY;

	if (ovl_uses_facts())
		return dw_ovl_facts_flags((u64)dentry, (u64)inode);

	struct ovl_inode *oi = ovl_inode_of(inode);
	if (!BPF_CORE_READ(oi, __upperdentry))
		return flags; /* image file: the common case stops here */
	flags |= DW_FILE_OVL_UPPER_DENTRY;

	unsigned long alias_bit = 1UL;
	if (bpf_core_enum_value_exists(enum ovl_entry_flag, OVL_E_UPPER_ALIAS))
		alias_bit = 1UL << bpf_core_enum_value(enum ovl_entry_flag, OVL_E_UPPER_ALIAS);

	void *fsdata = BPF_CORE_READ(dentry, d_fsdata);
	if (bpf_core_field_exists(struct ovl_entry___old, flags)) {
		struct ovl_entry___old *oe = fsdata;
		flags |= DW_FILE_OVL_LAYOUT_ENTRY;
		if (oe) {
			if (BPF_CORE_READ(oe, flags) & alias_bit)
				flags |= DW_FILE_OVL_UPPER_ALIAS;
			if (BPF_CORE_READ(oe, numlower) > 0)
				flags |= DW_FILE_OVL_HAS_LOWER;
		}
	} else if (bpf_core_field_exists(struct ovl_inode___fsdata, oe)) {
		struct ovl_inode___fsdata *oif = (void *)oi;
		flags |= DW_FILE_OVL_LAYOUT_FSDATA;
		if ((unsigned long)fsdata & alias_bit)
			flags |= DW_FILE_OVL_UPPER_ALIAS;
		if (BPF_CORE_READ(oif, oe, __numlower) > 0)
			flags |= DW_FILE_OVL_HAS_LOWER;
	} else {
		flags |= DW_FILE_OVL_UNRESOLVED;
	}
	return flags;
}

/*
 * Overlay in overlay. A process can mount an overlay of its own (as root, or
 * unprivileged in a user namespace since Linux 5.11) whose lower layer is a
 * directory it just wrote into the container: every file through it is
 * "lower", so it looks like image content. An overlay's answer is therefore
 * trusted only at the bottom of the stack: the layer that holds the file (its
 * upper dentry, or the topmost lower one) is followed down while it is itself
 * on overlayfs, and the bottom overlay's answer is the file's layer.
 *
 * The common case stops early: the file is on the process's root overlay,
 * which stacks on no other overlay (s_stack_depth 1) and was mounted in the
 * initial user namespace (a rootful runtime); its own answer stands.
 *
 * A file reached through any overlay but the process's root overlay, or
 * through a stack, is NESTED: an image binary run that way is still an
 * overlay mounted inside the container (drift.nested_overlay_exec). Below a
 * nested overlay a tmpfs layer makes the file a tmpfs file. Below the root
 * overlay a tmpfs is the runtime's storage, unless it was mounted in a user
 * namespace (an unprivileged user who chroot'ed into an overlay of its own).
 */
#define DW_OVL_MAX_DEPTH 3 /* overlays followed, the file's own included */

/* The dentry one layer down that holds an overlay file. */
static __always_inline struct dentry *ovl_real_dentry(struct dentry *dentry, struct inode *inode, u32 flags)
{
	/* Decided at load (not by the flags): the verifier must see the BTF reads
	 * below as dead code where overlay's types are absent. */
	if (ovl_uses_facts()) {
		if ((flags & DW_FILE_OVL_UPPER_DENTRY) && (flags & DW_FILE_OVL_UPPER_ALIAS))
			return ovl_fact_word(inode, bpf_core_type_size(struct inode));
		return (void *)dw_ovl_facts_lower((u64)dentry, (u64)inode, 0);
	}
	if ((flags & DW_FILE_OVL_UPPER_DENTRY) && (flags & DW_FILE_OVL_UPPER_ALIAS))
		return BPF_CORE_READ(ovl_inode_of(inode), __upperdentry);
	/* A positive dentry without an upper has at least one lower. */
	if (bpf_core_field_exists(struct ovl_entry___old, lowerstack)) {
		struct ovl_entry___old *oe = BPF_CORE_READ(dentry, d_fsdata);
		return BPF_CORE_READ(oe, lowerstack[0].dentry);
	}
	if (bpf_core_field_exists(struct ovl_inode___fsdata, oe)) {
		struct ovl_inode___fsdata *oif = (void *)ovl_inode_of(inode);
		return BPF_CORE_READ(oif, oe, __lowerstack[0].dentry);
	}
	return NULL;
}

/* The filesystem the process's root is on: its container's root overlay,
 * unless it chroot'ed or pivot_root'ed into another. Out-parameters, not a
 * struct: a local struct would get CO-RE relocations of its own, and libbpf
 * then searches module BTF for it, which needs CAP_SYS_ADMIN.
 *   stack_depth 1: its layers are on plain filesystems or tmpfs
 *   userns_level 0: mounted in the initial user namespace (a rootful runtime) */
static __always_inline struct super_block *current_root_sb(int *stack_depth, int *userns_level)
{
	struct super_block *sb;
	/* Direct, BTF-checked loads where the kernel has the helper (5.11+):
	 * this runs for every image exec from an overlay. */
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		struct task_struct *task = bpf_get_current_task_btf();
		sb = task->fs->root.mnt->mnt_sb;
		*stack_depth = sb->s_stack_depth;
		*userns_level = sb->s_user_ns->level;
	} else {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		sb = BPF_CORE_READ(task, fs, root.mnt, mnt_sb);
		*stack_depth = BPF_CORE_READ(sb, s_stack_depth);
		*userns_level = BPF_CORE_READ(sb, s_user_ns, level);
	}
	return sb;
}

static __always_inline u32 overlay_stack_flags(struct dentry *dentry, struct inode *inode, struct super_block *sb)
{
	u32 flags = overlay_file_flags(dentry, inode);
	if (flags & DW_FILE_OVL_UNRESOLVED)
		return flags;
	int root_stack_depth = 0, root_userns_level = 0;
	struct super_block *root_sb = current_root_sb(&root_stack_depth, &root_userns_level);
	u32 nested = 0;
	if (sb != root_sb)
		nested = DW_FILE_OVL_NESTED;
	else if (root_stack_depth <= 1 && root_userns_level == 0)
		return flags; /* the runtime's root overlay on its own storage: the common case stops here */
	/* Unrolled: the verifier of Linux 6.1 refused this loop (a back-edge through a fall-through). */
#pragma unroll
	for (int depth = 0; depth < DW_OVL_MAX_DEPTH; depth++) {
		struct dentry *real = ovl_real_dentry(dentry, inode, flags);
		if (!real) {
			/* Only an unknown overlay layout gets here; a nested file
			 * must not pass for image content then. */
			if (nested)
				nested |= DW_FILE_OVL_UNFOLLOWED;
			break;
		}
		struct super_block *real_sb = BPF_CORE_READ(real, d_sb);
		u32 magic = (u32)BPF_CORE_READ(real_sb, s_magic);
		if (magic == OVERLAYFS_SUPER_MAGIC) {
			nested |= DW_FILE_OVL_NESTED;
			if (depth == DW_OVL_MAX_DEPTH - 1) {
				nested |= DW_FILE_OVL_UNFOLLOWED; /* deeper than we follow */
				break;
			}
			sb = real_sb;
			dentry = real;
			inode = BPF_CORE_READ(real, d_inode);
			flags = overlay_file_flags(dentry, inode);
			continue;
		}
		if (magic == TMPFS_MAGIC && (sb != root_sb || BPF_CORE_READ(real_sb, s_user_ns, level) > 0)) {
			flags = DW_FILE_OVERLAY | DW_FILE_TMPFS;
			nested |= DW_FILE_OVL_NESTED;
		}
		break; /* the bottom: a plain filesystem, or tmpfs */
	}
	return flags | nested;
}

/* memfd files are unlinked shmem (or hugetlbfs) files named "memfd:<name>". */
static __always_inline bool is_memfd(struct dentry *dentry, u32 magic)
{
	char prefix[6] = {};
	if (magic != TMPFS_MAGIC && magic != HUGETLBFS_MAGIC)
		return false;
	bpf_probe_read_kernel(prefix, sizeof(prefix), BPF_CORE_READ(dentry, d_name.name));
	return prefix[0] == 'm' && prefix[1] == 'e' && prefix[2] == 'm' && prefix[3] == 'f' &&
	       prefix[4] == 'd' && prefix[5] == ':';
}

static __always_inline u32 file_flags(struct dentry *dentry, struct inode *inode, struct super_block *sb, u32 magic,
					u32 nlink)
{
	u32 flags = 0;
	if (magic == OVERLAYFS_SUPER_MAGIC)
		flags |= overlay_stack_flags(dentry, inode, sb);
	if (is_memfd(dentry, magic))
		flags |= DW_FILE_MEMFD;
	else if (magic == TMPFS_MAGIC)
		flags |= DW_FILE_TMPFS;
	if (nlink == 0)
		flags |= DW_FILE_UNLINKED;
	return flags;
}

#define MNT_READONLY 0x40

/* Worth sending to user space? Everything except image files (overlay lower)
 * and plain host filesystems; those are the vast majority of execs. A file on
 * a writable plain mount counts only inside foreign namespaces (a volume). */
static __always_inline bool file_is_drift_candidate(u32 flags)
{
	if (flags & (DW_FILE_MEMFD | DW_FILE_TMPFS | DW_FILE_UNLINKED | DW_FILE_OVL_UNRESOLVED | DW_FILE_OVL_NESTED))
		return true;
	if (!(flags & DW_FILE_OVERLAY))
		return (flags & DW_FILE_FOREIGN_NS) && !(flags & DW_FILE_MNT_READONLY);
	return (flags & DW_FILE_OVL_UPPER_DENTRY) && (flags & DW_FILE_OVL_UPPER_ALIAS);
}

static __always_inline void inode_ctime(struct inode *inode, s64 *sec, u32 *nsec)
{
	if (bpf_core_field_exists(struct inode___ctime_sec, i_ctime_sec)) {
		struct inode___ctime_sec *i = (void *)inode;
		*sec = BPF_CORE_READ(i, i_ctime_sec);
		*nsec = BPF_CORE_READ(i, i_ctime_nsec);
	} else if (bpf_core_field_exists(struct inode___ctime_priv, __i_ctime)) {
		struct inode___ctime_priv *i = (void *)inode;
		*sec = BPF_CORE_READ(i, __i_ctime.tv_sec);
		*nsec = BPF_CORE_READ(i, __i_ctime.tv_nsec);
	} else {
		struct inode___ctime_old *i = (void *)inode;
		*sec = BPF_CORE_READ(i, i_ctime.tv_sec);
		*nsec = BPF_CORE_READ(i, i_ctime.tv_nsec);
	}
}

#endif
