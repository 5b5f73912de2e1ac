/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Watched image execs: interpreters running a script file and package
 * managers (exec_watch in maps.h, filled by user space from config).
 *
 * Image execs are dropped before any string is copied; this check sits on
 * that path, so it is the task's comm (16 bytes) and the exec'd file's own
 * name (a symlink with another name to an image interpreter has the link's
 * name as comm), each tested against a filter in .rodata first, which
 * touches no map; the map's bit filter and then a hash lookup only follow a
 * hit. Names are compared as two little-endian words, no string is copied.
 *
 * An interpreter is sent only inside a container (own mount and pid
 * namespaces, where the host's are known), and only when argv has more
 * than argv[0]. A bare shell or REPL reads from a terminal or stdin, and a
 * shell whose first argument is a `-c` cluster (the option letter comes from
 * the map value) runs inline code; both are counted and dropped, since
 * `sh -c` is among the most frequent execs of all. Everything finer (python
 * -m, perl -e, options that take a value) is parsed in user space, which
 * errs on the side of sending.
 */
#ifndef DRIFTWATCH_WATCH_BPF_H
#define DRIFTWATCH_WATCH_BPF_H

#include "headers/vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "headers/events.h"
#include "headers/maps.h"

#define DW_WATCH_ARGV_SCAN 256

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, char[2 * DW_WATCH_ARGV_SCAN]); /* masked reads stay inside */
} watch_argv SEC(".maps");

/*
 * A 4096-bit filter over the exec_watch keys, filled beside the map: most
 * names miss here with a few arithmetic instructions and an inlined array
 * access, and only a hit pays for the hash lookup. The same hash is in
 * src/native/loader.ts (watchFilterBit).
 */
#define DW_WATCH_FILTER_WORDS 64

struct dw_watch_filter {
	u64 bits[DW_WATCH_FILTER_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct dw_watch_filter);
} exec_watch_filter SEC(".maps");

static __always_inline bool watch_maybe(struct dw_watch_filter *f, u64 w0, u64 w1)
{
	u64 h = ((w0 ^ (w1 * 0xc2b2ae3d27d4eb4fULL)) * 0x9e3779b97f4a7c15ULL) >> 52;
	return f->bits[(h >> 6) & (DW_WATCH_FILTER_WORDS - 1)] & (1ULL << (h & 63));
}

/*
 * The first stage, before any map is touched: a 256-bit filter in .rodata,
 * on the cache line of the cfg_* settings the exec hook reads on every exec
 * anyway, filled by the loader before load (the names are fixed for the
 * object's life; src/native/loader.ts, execWatchPrefilter). It is keyed by a
 * name's first 8 bytes with digits and dots cleared, so versioned names
 * (python3.11, perl5.36.0, php8.2) share their family's two bits and a few
 * dozen families leave most of it clear. Its default passes every name: an
 * object loaded without the names behaves as if there were no first stage.
 */
#define DW_WATCH_PRE_WORDS 4
const volatile __u64 cfg_watch_pre[DW_WATCH_PRE_WORDS] = { ~0ULL, ~0ULL, ~0ULL, ~0ULL };

static __always_inline bool watch_pre(u64 w0)
{
	/* Bytes '.' to '9' (0x2e-0x39, no '/' in a name) cleared; bytes >= 0x80 kept. */
	u64 low = w0 & 0x7f7f7f7f7f7f7f7fULL;
	u64 in = (low + 0x5252525252525252ULL) & ~(low + 0x4646464646464646ULL) & ~w0 & 0x8080808080808080ULL;
	u64 f = w0 & ~((in >> 7) * 0xff);
	u64 h = f * 0x9e3779b97f4a7c15ULL;
	u32 a = h >> 56, b = (h >> 48) & 0xff;
	return (cfg_watch_pre[a >> 6] & (1ULL << (a & 63))) && (cfg_watch_pre[b >> 6] & (1ULL << (b & 63)));
}

/* The bytes of a little-endian word below its first NUL (names are NUL-terminated). */
static __always_inline u64 before_nul(u64 w, bool *ended)
{
	u64 zero = (w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL;
	if (!zero)
		return w;
	*ended = true;
	u64 first = zero & -zero; /* the lowest zero byte's high bit */
	return w & ((first >> 7) - 1);
}

/* A short name is stored in the dentry itself: read it with two direct
 * loads instead of a probe read (this runs for every dropped image exec).
 * The inline array was renamed in 6.14; each flavor names one layout. */
union shortname_store___dw {
	unsigned char string[40];
	unsigned long words[5];
};
struct dentry___shortname { /* 6.14+ */
	union shortname_store___dw d_shortname;
} __attribute__((preserve_access_index));
struct dentry___iname { /* < 6.14 */
	unsigned char d_iname[32];
} __attribute__((preserve_access_index));

/* mm->exe_file: the exec'd file, set by begin_new_exec before this tracepoint. */
struct mm_struct___watch {
	struct file *exe_file;
} __attribute__((preserve_access_index));

/* Word i (0 or 1) of a dentry's inline name, or 0 where neither layout is known. */
static __always_inline u64 inline_name_word(struct dentry *d, int i)
{
	if (bpf_core_field_exists(struct dentry___shortname, d_shortname))
		return ((struct dentry___shortname *)(void *)d)->d_shortname.words[i];
	if (bpf_core_field_exists(struct dentry___iname, d_iname)) {
		/* Literal indices: each byte load is then relocated as an element of the array. */
		struct dentry___iname *di = (void *)d;
		return i ? *(u64 *)&di->d_iname[8] : *(u64 *)&di->d_iname[0];
	}
	return 0;
}

/* The exec_watch value for this exec: by comm, else by the file's own name. */
static __always_inline u32 watch_lookup(struct dentry *dentry)
{
	struct dw_watch_key key = {};
	u64 *c = (u64 *)key.comm;
	u64 w[2] = {};
	struct dentry *d = NULL;
	bool have_iname = bpf_core_field_exists(struct dentry___shortname, d_shortname) ||
			  bpf_core_field_exists(struct dentry___iname, d_iname);
	/* Direct, BTF-checked loads where the kernel has the helper (5.11+):
	 * this runs for every image exec that is dropped. The first stage needs
	 * the name's first word only; the second (in the dentry's next cache
	 * line) is read after it passes. */
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		struct task_struct *t = bpf_get_current_task_btf();
		c[0] = *(u64 *)&t->comm[0];
		c[1] = *(u64 *)&t->comm[8];
		struct dentry *bd = ((struct mm_struct___watch *)t->mm)->exe_file->f_path.dentry;
		/* Names shorter than the inline array are always stored inline;
		 * 15 bytes at most is what a key holds. */
		if (have_iname && bd->d_name.len < 16) {
			d = bd;
			w[0] = inline_name_word(d, 0);
		} else if (bpf_probe_read_kernel(w, sizeof(w), bd->d_name.name)) {
			w[0] = w[1] = 0;
		}
	} else {
		bpf_get_current_comm(key.comm, sizeof(key.comm));
		if (bpf_probe_read_kernel(w, sizeof(w), BPF_CORE_READ(dentry, d_name.name)))
			w[0] = w[1] = 0;
	}
	bool ended = false;
	w[0] = before_nul(w[0], &ended);
	/* Where the file's first word matches the comm's, so does its first stage. */
	bool comm_maybe = watch_pre(c[0]);
	bool name_maybe = w[0] && (w[0] == c[0] ? comm_maybe : watch_pre(w[0]));
	if (!comm_maybe && !name_maybe)
		return 0;

	if (ended) {
		w[1] = 0;
	} else {
		if (d)
			w[1] = inline_name_word(d, 1);
		w[1] = before_nul(w[1], &ended) & 0x00ffffffffffffffULL; /* comm's cut at 15 bytes */
	}
	u32 zero = 0;
	struct dw_watch_filter *f = bpf_map_lookup_elem(&exec_watch_filter, &zero);
	if (!f)
		return 0;
	u32 *v;
	if (comm_maybe && watch_maybe(f, c[0], c[1])) {
		v = bpf_map_lookup_elem(&exec_watch, &key);
		if (v)
			return *v;
	}
	if (!name_maybe || (w[0] == c[0] && w[1] == c[1]) || !watch_maybe(f, w[0], w[1]))
		return 0; /* the same name already missed */
	/* A multi-call binary (busybox) run by another name runs the applet of
	 * that name, which just missed; by /proc/self/exe (comm "exe") its
	 * applet is argv[0], which is not read here: judged like a shell. */
	bool reexec = c[0] == 0x657865 /* "exe" */ && c[1] == 0;
	c[0] = w[0];
	c[1] = w[1];
	v = bpf_map_lookup_elem(&exec_watch, &key);
	if (!v || ((*v & DW_WATCH_MULTICALL) && !reexec))
		return 0;
	return *v;
}

enum dw_operand { DW_OPERAND_NONE, DW_OPERAND_INLINE, DW_OPERAND_FILE };

/*
 * Whether the new image's argv (read from its mm, like put_argv) may hold a
 * script operand: none when argv[0] is alone, inline code when argv[1] is a
 * short option cluster holding the inline letter (sh -c, bash -ec), else
 * maybe (user space parses the rest). Two string reads and a loop over at
 * most 15 bytes, so every verifier (5.10 included) checks it quickly.
 */
static __always_inline enum dw_operand watch_operand(struct task_struct *task, u8 inline_opt)
{
	u32 zero = 0;
	char *buf = bpf_map_lookup_elem(&watch_argv, &zero);
	if (!buf)
		return DW_OPERAND_FILE;
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long end = BPF_CORE_READ(mm, arg_end);
	if (end <= start)
		return DW_OPERAND_NONE;
	/* argv[0]'s length, with its NUL: where argv[1] starts. */
	long n0 = bpf_probe_read_user_str(buf, DW_WATCH_ARGV_SCAN, (void *)start);
	if (n0 <= 0 || n0 >= DW_WATCH_ARGV_SCAN)
		return DW_OPERAND_FILE; /* unreadable or longer than the window: user space says */
	if (start + n0 >= end)
		return DW_OPERAND_NONE; /* a bare shell or REPL */
	char a[16] = {};
	if (bpf_probe_read_user_str(a, sizeof(a), (void *)(start + n0)) <= 0)
		return DW_OPERAND_FILE;
	if ((a[0] != '-' && a[0] != '+') || a[1] == '-' || !inline_opt)
		return DW_OPERAND_FILE; /* an operand, a long option, or no kernel rule */
	for (int i = 1; i < (int)sizeof(a); i++) {
		if (a[i] == 0)
			break;
		if (a[i] == (char)inline_opt)
			return DW_OPERAND_INLINE;
	}
	return DW_OPERAND_FILE;
}

/* Kind bit of drift.interpreted_script in prevent_containers (src/prevent/kinds.ts). */
#define DW_KIND_INTERPRETED (1U << 7)
#define DW_SIGSTOP 19

/*
 * Prevention for interpreted scripts: the script's layer is not known here
 * (the interpreter opens it later), so a watched interpreter in a container
 * that prevents them is stopped before its first instruction and user space
 * decides (kill or continue, through a pidfd). The container's own plan
 * decides, as for every other kind; a dry run stops nothing and marks the
 * exec would_prevent.
 */
static __always_inline u32 watch_hold(struct task_struct *task)
{
	u32 zero = 0;
	struct dw_prevent_config *cfg = bpf_map_lookup_elem(&prevent_config, &zero);
	if (!cfg || !cfg->enabled || !cfg_host_mnt_ns)
		return 0;
	u64 cgid = bpf_get_current_cgroup_id();
	struct dw_prevent_container *c = bpf_map_lookup_elem(&prevent_containers, &cgid);
	u32 kinds = c ? c->kinds : cfg->unknown_kinds;
	if (!(kinds & DW_KIND_INTERPRETED))
		return 0;
	/* A dry run holds nothing; a finding user space makes (the script is
	 * drift) then says it would have been stopped. */
	if (cfg->dry_run)
		return DW_EXEC_WOULD_PREVENT;
	if (bpf_send_signal_thread(DW_SIGSTOP)) {
		stat_inc(DW_STAT_WATCH_HOLD_FAILED);
		return 0;
	}
	stat_inc(DW_STAT_WATCH_HELD);
	return DW_EXEC_WATCH_HELD;
}

/*
 * An image exec about to be dropped: the DW_EXEC_WATCH_* bits it is sent
 * with, or 0 to drop it.
 */
static __always_inline u32 watch_image_exec(struct task_struct *task, struct dentry *dentry)
{
	u32 v = watch_lookup(dentry);
	if (!v)
		return 0;
	u32 out = 0;
	if (v & DW_WATCH_PACKAGE_MANAGER)
		out |= DW_EXEC_WATCH_PACKAGE_MANAGER;
	/* Scripts on the host are no drift: only containers' interpreters. */
	if ((v & DW_WATCH_INTERPRETER) && (!cfg_host_mnt_ns || task_in_foreign_ns(task))) {
		enum dw_operand op = watch_operand(task, (u8)(v >> DW_WATCH_INLINE_OPT_SHIFT));
		if (op == DW_OPERAND_FILE)
			out |= DW_EXEC_WATCH_INTERPRETER | watch_hold(task);
		else
			stat_inc(op == DW_OPERAND_INLINE ? DW_STAT_WATCH_INLINE : DW_STAT_WATCH_NO_OPERAND);
	}
	if (out)
		stat_inc(DW_STAT_WATCH_EMITTED);
	return out;
}

/* A drift candidate is sent anyway; the bits only tell user space what it runs. */
static __always_inline u32 watch_drift_exec(struct dentry *dentry)
{
	u32 v = watch_lookup(dentry);
	return ((v & DW_WATCH_INTERPRETER) ? DW_EXEC_WATCH_INTERPRETER : 0) |
	       ((v & DW_WATCH_PACKAGE_MANAGER) ? DW_EXEC_WATCH_PACKAGE_MANAGER : 0);
}

#endif
