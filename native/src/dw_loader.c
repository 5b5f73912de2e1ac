#define _GNU_SOURCE /* memfd_create */
#include "dw_loader.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/types.h>

#include "events.h"
#include "tracee.skel.h"

#define DW_MAX_LINKS 16

struct dw_loader {
	struct tracee *skel;
	struct ring_buffer *rb;
	struct bpf_link *links[DW_MAX_LINKS];
	size_t nlinks;
	/* the drain in progress */
	uint8_t *out;
	size_t cap, len;
	int full;
	/* a record that did not fit last time */
	uint8_t *pending;
	size_t pending_len;
	uint64_t records;
	int btf_fd; /* merged vmlinux + overlay BTF, until load (-1: none) */
	const char *overlay_path;
};

/* libbpf logs through one global callback: keep the tail for error messages. */
static char g_log[8192];
static size_t g_log_len;

static int log_cb(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	if (getenv("DW_LIBBPF_STDERR")) { /* whole verifier logs, for BPF development */
		va_list copy;
		va_copy(copy, args);
		vfprintf(stderr, fmt, copy);
		va_end(copy);
	}
	char *msg = NULL;
	int len = vasprintf(&msg, fmt, args);
	if (len <= 0) {
		free(msg);
		return 0;
	}
	/* A verifier log comes as one message: its end says why. */
	char line[2048];
	int n = len < (int)sizeof(line) ? len : (int)sizeof(line) - 1;
	memcpy(line, msg + len - n, n);
	free(msg);
	if (g_log_len + n >= sizeof(g_log)) { /* keep the newest half */
		size_t keep = sizeof(g_log) / 2;
		memmove(g_log, g_log + g_log_len - keep, keep);
		g_log_len = keep;
	}
	memcpy(g_log + g_log_len, line, n);
	g_log_len += n;
	g_log[g_log_len] = 0;
	return 0;
}

const char *dw_last_log(void) { return g_log; }
void dw_clear_log(void) { g_log_len = 0; g_log[0] = 0; }

/*
 * Where overlayfs is a module, CO-RE needs its types from the module's BTF.
 * libbpf finds module BTF by walking BTF object ids, which needs
 * CAP_SYS_ADMIN; a sensor with only CAP_BPF and CAP_PERFMON would silently
 * miss overlay's types. The files in /sys/kernel/btf are world-readable, so
 * vmlinux and overlay are merged here into one BTF (overlay's split ids
 * continue vmlinux's, so appending keeps every reference valid) and handed
 * to libbpf as the custom BTF for relocations. Returns a memfd, or -errno.
 */
static int merged_overlay_btf(void)
{
	int err = 0, fd = -1;
	struct btf *base = btf__parse("/sys/kernel/btf/vmlinux", NULL);
	if (!base)
		return -errno;
	struct btf *ovl = btf__parse_split("/sys/kernel/btf/overlay", base);
	struct btf *merged = ovl ? btf__new_empty() : NULL;
	if (!merged) {
		err = -errno;
		goto out;
	}
	err = btf__add_btf(merged, base); /* into an empty BTF: ids are unchanged */
	for (__u32 id = btf__type_cnt(base); err >= 0 && id < btf__type_cnt(ovl); id++)
		err = btf__add_type(merged, ovl, btf__type_by_id(ovl, id)); /* ids kept as they are */
	if (err < 0)
		goto out;
	__u32 size;
	const void *raw = btf__raw_data(merged, &size);
	fd = raw ? memfd_create("driftwatch-btf", MFD_CLOEXEC) : -1;
	if (fd < 0 || write(fd, raw, size) != (ssize_t)size) {
		err = fd < 0 ? -errno : -EIO;
		goto out;
	}
	err = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	btf__free(merged);
	btf__free(ovl);
	btf__free(base);
	return err;
}

/* Where CO-RE finds overlay's types: built into vmlinux, overlay's module BTF,
 * or nowhere (5.10, kernels without module BTF, overlay loaded after us), and
 * then the BPF side reads overlay by layout facts. */
static const char *overlay_types_source(int have_module_btf)
{
	if (have_module_btf)
		return "module BTF";
	struct btf *vmlinux = btf__parse("/sys/kernel/btf/vmlinux", NULL);
	int builtin = vmlinux && btf__find_by_name_kind(vmlinux, "ovl_inode", BTF_KIND_STRUCT) > 0;
	btf__free(vmlinux);
	if (builtin)
		return "vmlinux BTF";
	if (access("/sys/kernel/btf/overlay", R_OK) == 0)
		return "module BTF";
	return "layout facts (no overlay BTF)";
}

const char *dw_loader_overlay_path(const struct dw_loader *l) { return l->overlay_path; }

int dw_loader_open(const struct dw_loader_opts *opts, struct dw_loader **out)
{
	libbpf_set_print(log_cb);
	dw_clear_log();
	struct dw_loader *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->btf_fd = -1;
	char btf_path[64] = "";
	if (access("/sys/kernel/btf/overlay", R_OK) == 0) {
		int fd = merged_overlay_btf();
		if (fd >= 0) {
			l->btf_fd = fd;
			snprintf(btf_path, sizeof(btf_path), "/proc/self/fd/%d", fd);
		} /* else: libbpf reads module BTF itself where it may */
	}
	l->overlay_path = overlay_types_source(l->btf_fd >= 0);
	if (opts && opts->ovl_force_facts)
		l->overlay_path = "layout facts (forced)";
	LIBBPF_OPTS(bpf_object_open_opts, open_opts, .btf_custom_path = btf_path[0] ? btf_path : NULL);
	l->skel = tracee__open_opts(&open_opts);
	if (!l->skel) {
		int err = -errno;
		if (l->btf_fd >= 0)
			close(l->btf_fd);
		free(l);
		return err ? err : -EINVAL;
	}
	l->skel->rodata->cfg_emit_all = opts && opts->emit_all;
	l->skel->rodata->cfg_ignore_tgid = opts ? opts->ignore_tgid : 0;
	l->skel->rodata->cfg_host_mnt_ns = opts ? opts->host_mnt_ns : 0;
	l->skel->rodata->cfg_host_pid_ns = opts ? opts->host_pid_ns : 0;
	l->skel->rodata->cfg_ovl_force_facts = opts && opts->ovl_force_facts;
	if (opts && opts->watch_pre_set)
		memcpy(l->skel->rodata->cfg_watch_pre, opts->watch_pre, sizeof(opts->watch_pre));
	if (!(opts && opts->bench)) {
		bpf_program__set_autoload(l->skel->progs.bench_generate, false);
		bpf_map__set_autocreate(l->skel->maps.bench_tmpl, false);
	}
	int hook = opts ? opts->script_hook : DW_SCRIPT_HOOK_NONE;
	bpf_program__set_autoload(l->skel->progs.lsm_bprm_check, hook == DW_SCRIPT_HOOK_LSM);
	bpf_program__set_autoload(l->skel->progs.fentry_bprm_check, hook == DW_SCRIPT_HOOK_FENTRY);
	int mmap_hook = opts ? opts->mmap_hook : DW_MMAP_HOOK_NONE;
	bpf_program__set_autoload(l->skel->progs.lsm_mmap_file, mmap_hook == DW_MMAP_HOOK_LSM);
	bpf_program__set_autoload(l->skel->progs.fentry_mmap_file, mmap_hook == DW_MMAP_HOOK_FENTRY);
	bpf_program__set_autoload(l->skel->progs.sys_enter_mmap, mmap_hook == DW_MMAP_HOOK_TRACEPOINT);
	if (opts && opts->ring_bytes) {
		int err = bpf_map__set_max_entries(l->skel->maps.events, opts->ring_bytes);
		if (err) {
			dw_loader_close(l);
			return err;
		}
	}
	*out = l;
	return 0;
}

static void append(struct dw_loader *l, const void *data, size_t len)
{
	uint8_t *dst = l->out + l->len;
	uint32_t hdr[2] = { (uint32_t)len, 0 };
	size_t frame = dw_frame_size(len);
	memcpy(dst, hdr, DW_FRAME_HEADER);
	memcpy(dst + DW_FRAME_HEADER, data, len);
	memset(dst + DW_FRAME_HEADER + len, 0, frame - DW_FRAME_HEADER - len);
	l->len += frame;
	l->records++;
}

static int on_record(void *ctx, void *data, size_t len)
{
	struct dw_loader *l = ctx;
	if (l->full || dw_frame_size(len) > l->cap - l->len) {
		uint8_t *p = realloc(l->pending, len);
		if (!p)
			return -ENOMEM;
		memcpy(p, data, len);
		l->pending = p;
		l->pending_len = len;
		l->full = 1;
		return -E2BIG; /* stops this drain; the record is kept */
	}
	append(l, data, len);
	return 0;
}

int dw_loader_load(struct dw_loader *l)
{
	dw_clear_log();
	int err = tracee__load(l->skel);
	if (l->btf_fd >= 0) { /* relocations are done, loaded or not */
		close(l->btf_fd);
		l->btf_fd = -1;
	}
	if (err)
		return err < 0 ? err : -err;
	l->rb = ring_buffer__new(bpf_map__fd(l->skel->maps.events), on_record, l, NULL);
	if (!l->rb)
		return -errno;
	/* Loading parsed the kernel's BTF (megabytes) and freed it; hand that
	 * memory back to the system instead of keeping it in the heap. */
	malloc_trim(0);
	return 0;
}

int dw_loader_attach(struct dw_loader *l, const char **names, size_t max, size_t *count)
{
	struct bpf_program *prog;
	*count = 0;
	bpf_object__for_each_program(prog, l->skel->obj)
	{
		if (!bpf_program__autoload(prog) || bpf_program__type(prog) == BPF_PROG_TYPE_SYSCALL)
			continue; /* syscall programs are run, not attached */
		if (l->nlinks >= DW_MAX_LINKS)
			return -E2BIG;
		dw_clear_log();
		struct bpf_link *link = bpf_program__attach(prog);
		if (!link)
			return -errno;
		l->links[l->nlinks++] = link;
		if (*count < max)
			names[(*count)++] = bpf_program__section_name(prog);
	}
	return 0;
}

int dw_loader_programs(struct dw_loader *l, const char **names, size_t max, size_t *count)
{
	struct bpf_program *prog;
	*count = 0;
	bpf_object__for_each_program(prog, l->skel->obj)
	{
		if (!bpf_program__autoload(prog) || bpf_program__type(prog) == BPF_PROG_TYPE_SYSCALL)
			continue;
		if (*count < max)
			names[(*count)++] = bpf_program__name(prog);
	}
	return 0;
}

int dw_loader_attach_one(struct dw_loader *l, const char *name, const char **section)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(l->skel->obj, name);
	if (!prog)
		return -ENOENT;
	if (l->nlinks >= DW_MAX_LINKS)
		return -E2BIG;
	dw_clear_log();
	struct bpf_link *link = bpf_program__attach(prog);
	if (!link)
		return -errno;
	l->links[l->nlinks++] = link;
	*section = bpf_program__section_name(prog);
	return 0;
}

int dw_loader_consume(struct dw_loader *l, uint8_t *buf, size_t cap, size_t *written)
{
	*written = 0;
	if (!l->rb)
		return -EINVAL;
	l->out = buf;
	l->cap = cap;
	l->len = 0;
	l->full = 0;
	if (l->pending_len) {
		if (dw_frame_size(l->pending_len) > cap)
			return -ENOSPC;
		append(l, l->pending, l->pending_len);
		l->pending_len = 0;
	}
	int n = ring_buffer__consume(l->rb);
	*written = l->len;
	l->out = NULL;
	if (n < 0 && n != -E2BIG)
		return n;
	return 0;
}

int dw_loader_stats(struct dw_loader *l, uint64_t *values, size_t n)
{
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	__u64 *per_cpu = calloc(ncpu, sizeof(__u64));
	if (!per_cpu)
		return -ENOMEM;
	int fd = bpf_map__fd(l->skel->maps.stats);
	for (__u32 key = 0; key < n && key < DW_STAT_MAX; key++) {
		values[key] = 0;
		if (fd >= 0 && bpf_map_lookup_elem(fd, &key, per_cpu) == 0)
			for (int c = 0; c < ncpu; c++)
				values[key] += per_cpu[c];
	}
	free(per_cpu);
	return 0;
}

uint64_t dw_loader_records_delivered(const struct dw_loader *l) { return l->records; }
int dw_loader_ring_fd(const struct dw_loader *l) { return l->rb ? bpf_map__fd(l->skel->maps.events) : -EINVAL; }
int dw_loader_has_pending(const struct dw_loader *l) { return l->pending_len > 0; }

int dw_loader_prog_info(struct dw_loader *l, size_t idx, const char **name, uint32_t *id, uint64_t *run_time_ns,
			uint64_t *run_cnt, uint64_t *recursion_misses)
{
	struct bpf_program *prog;
	size_t i = 0;
	bpf_object__for_each_program(prog, l->skel->obj)
	{
		if (i++ != idx)
			continue;
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		memset(&info, 0, sizeof(info));
		int fd = bpf_program__fd(prog);
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len))
			return -EBADF;
		*name = bpf_program__name(prog);
		*id = info.id;
		*run_time_ns = info.run_time_ns;
		*run_cnt = info.run_cnt;
		*recursion_misses = info.recursion_misses;
		return 0;
	}
	return -ENOENT;
}

struct dw_bench_args_abi { /* mirrors struct dw_bench_args in bench.bpf.h */
	__u32 count, written, dropped, wakeup, ntmpl;
};

int dw_loader_bench_run(struct dw_loader *l, uint32_t count, uint32_t ntmpl, uint32_t *written, uint32_t *dropped)
{
	int fd = bpf_program__fd(l->skel->progs.bench_generate);
	if (fd < 0)
		return -ENOENT;
	struct dw_bench_args_abi args = { .count = count, .ntmpl = ntmpl };
	/* syscall programs take no ctx_out: the kernel writes ctx_in back */
	LIBBPF_OPTS(bpf_test_run_opts, topts, .ctx_in = &args, .ctx_size_in = sizeof(args));
	int err = bpf_prog_test_run_opts(fd, &topts);
	if (err)
		return -errno;
	*written = args.written;
	*dropped = args.dropped;
	return 0;
}

static struct bpf_map *map_by_name(struct dw_loader *l, const char *name)
{
	struct bpf_map *map = bpf_object__find_map_by_name(l->skel->obj, name);
	return map && bpf_map__fd(map) >= 0 ? map : NULL;
}

int dw_loader_map_update(struct dw_loader *l, const char *name, const void *key, size_t key_size, const void *value,
			 size_t value_size)
{
	struct bpf_map *map = map_by_name(l, name);
	if (!map)
		return -ENOENT;
	int err = bpf_map__update_elem(map, key, key_size, value, value_size, BPF_ANY);
	return err < 0 ? err : 0;
}

int dw_loader_map_delete(struct dw_loader *l, const char *name, const void *key, size_t key_size)
{
	struct bpf_map *map = map_by_name(l, name);
	if (!map)
		return -ENOENT;
	int err = bpf_map__delete_elem(map, key, key_size, 0);
	return err < 0 ? err : 0;
}

int dw_loader_map_clear(struct dw_loader *l, const char *name)
{
	struct bpf_map *map = map_by_name(l, name);
	if (!map)
		return -ENOENT;
	size_t ks = bpf_map__key_size(map);
	uint8_t *key = calloc(1, ks), *next = calloc(1, ks);
	int n = 0, err = 0;
	if (!key || !next) {
		err = -ENOMEM;
		goto out;
	}
	/* Always ask for the first key: the one before was just deleted. */
	while (bpf_map__get_next_key(map, NULL, next, ks) == 0) {
		memcpy(key, next, ks);
		err = bpf_map__delete_elem(map, key, ks, 0);
		if (err < 0)
			goto out;
		n++;
	}
out:
	free(key);
	free(next);
	return err < 0 ? err : n;
}

void dw_loader_close(struct dw_loader *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nlinks; i++)
		bpf_link__destroy(l->links[i]);
	if (l->rb)
		ring_buffer__free(l->rb);
	if (l->skel)
		tracee__destroy(l->skel);
	if (l->btf_fd >= 0)
		close(l->btf_fd);
	free(l->pending);
	free(l);
}
