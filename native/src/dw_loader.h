/* Loader core shared by the N-API addon and the static guest loader used in
 * kernel-matrix tests: open/configure/load/attach the embedded skeleton,
 * drain the ring buffer into a caller buffer, read counters, tear down. */
#ifndef DW_LOADER_H
#define DW_LOADER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dw_loader;

struct dw_loader_opts {
	int emit_all;
	uint32_t ignore_tgid;
	uint32_t ring_bytes; /* 0: default */
	int bench;           /* also load the delivery-benchmark generator */
	uint32_t host_mnt_ns; /* host namespaces, for volume and script checks (0: off) */
	uint32_t host_pid_ns;
	int script_hook;      /* enum dw_script_hook: which bprm_check program to load */
	int mmap_hook;        /* enum dw_mmap_hook: which exec-mapping program to load */
	int ovl_force_facts;  /* read overlay by layout facts even where its BTF exists (tests, A/B) */
	int watch_pre_set;    /* watch_pre holds exec_watch's first-stage filter (else every name passes it) */
	uint64_t watch_pre[4];
};

/* The #! script hook. Each needs something not every kernel allows (BPF-LSM
 * active, fentry not forbidden); the caller tries them in order and falls
 * back to none, where user space looks scripts up itself. */
enum dw_script_hook {
	DW_SCRIPT_HOOK_NONE = 0,
	DW_SCRIPT_HOOK_LSM = 1,
	DW_SCRIPT_HOOK_FENTRY = 2,
};

/* Exec mappings (LD_PRELOAD of a dropped library, ld.so on a dropped file).
 * LSM and fentry cost only mmap calls; the syscall tracepoint taxes every
 * syscall on the node and is loaded only when asked for. */
enum dw_mmap_hook {
	DW_MMAP_HOOK_NONE = 0,
	DW_MMAP_HOOK_LSM = 1,
	DW_MMAP_HOOK_FENTRY = 2,
	DW_MMAP_HOOK_TRACEPOINT = 3,
};

/* All functions return 0 or a negative errno; dw_last_log() has libbpf's words. */
int dw_loader_open(const struct dw_loader_opts *opts, struct dw_loader **out);
int dw_loader_load(struct dw_loader *l);
/* Attaches every program; names[i] point into the object, valid until close. */
int dw_loader_attach(struct dw_loader *l, const char **names, size_t max, size_t *count);
/* Names of the loaded programs that can be attached (not syscall programs). */
int dw_loader_programs(struct dw_loader *l, const char **names, size_t max, size_t *count);
/* Attaches one program by name; *section is set to its section name. */
int dw_loader_attach_one(struct dw_loader *l, const char *name, const char **section);
/* Appends framed records ([u32 len][u32 0][record][pad to 8]) to buf until the
 * ring is empty or buf is full; a record that does not fit is kept for the
 * next call, never dropped. *written is set to the bytes used. */
int dw_loader_consume(struct dw_loader *l, uint8_t *buf, size_t cap, size_t *written);
/* Kernel counters summed over CPUs, indexed by enum dw_stat. */
int dw_loader_stats(struct dw_loader *l, uint64_t *values, size_t n);
/* The ring buffer's map fd: poll(2) says readable while records wait. */
int dw_loader_ring_fd(const struct dw_loader *l);
uint64_t dw_loader_records_delivered(const struct dw_loader *l);
int dw_loader_has_pending(const struct dw_loader *l);
/* Iterates programs: returns 0 and fills the fields, or -ENOENT past the end. */
int dw_loader_prog_info(struct dw_loader *l, size_t idx, const char **name, uint32_t *id, uint64_t *run_time_ns,
			uint64_t *run_cnt, uint64_t *recursion_misses);
/* Runs the benchmark generator (needs opts.bench): writes count synthetic
 * records into the ring buffer from the kernel; with ntmpl > 0, copies of the
 * records in map bench_tmpl (entries 0..ntmpl-1, round robin). */
int dw_loader_bench_run(struct dw_loader *l, uint32_t count, uint32_t ntmpl, uint32_t *written, uint32_t *dropped);
/* Maps user space keeps for the kernel (prevention): by name, with the
 * map's own key and value sizes, else -EINVAL. */
int dw_loader_map_update(struct dw_loader *l, const char *map, const void *key, size_t key_size, const void *value,
			 size_t value_size);
int dw_loader_map_delete(struct dw_loader *l, const char *map, const void *key, size_t key_size);
/* Deletes every entry; returns how many, or a negative errno. */
int dw_loader_map_clear(struct dw_loader *l, const char *map);
/* How overlay files are told apart on this kernel, named for the start-up line:
 * "vmlinux BTF", "module BTF", "layout facts (no overlay BTF)" or
 * "layout facts (forced)". Valid after open. */
const char *dw_loader_overlay_path(const struct dw_loader *l);
void dw_loader_close(struct dw_loader *l);
const char *dw_last_log(void);
void dw_clear_log(void);

#define DW_FRAME_HEADER 8
static inline size_t dw_frame_size(size_t len) { return (DW_FRAME_HEADER + len + 7) & ~(size_t)7; }

#ifdef __cplusplus
}
#endif
#endif
