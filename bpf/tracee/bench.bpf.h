/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Delivery benchmark generator: a syscall program, run with BPF test-run,
 * that writes synthetic exec records into the same ring buffer as the real
 * hook, so addon -> JS throughput is measured without exec'ing anything.
 * Loaded only when the loader asks for it (autoload is off otherwise).
 */
#ifndef DRIFTWATCH_BENCH_BPF_H
#define DRIFTWATCH_BENCH_BPF_H

struct dw_bench_args {
	__u32 count;   /* records to write */
	__u32 written; /* out: records that fit in the ring */
	__u32 dropped; /* out: reserve failures */
	__u32 wakeup;  /* 1: wake the reader on the last record */
	__u32 ntmpl;   /* > 0: write copies of bench_tmpl[i % ntmpl] instead of the synthetic record */
};

/*
 * Records captured from the real hook (the drift-storm benchmark): written
 * as they are, with a fresh timestamp, so user space does its real work on
 * real files. Created only with the generator (the loader turns autocreate off).
 */
#define DW_BENCH_TMPL_MAX 4096
#define DW_BENCH_TMPLS    64
struct dw_bench_tmpl {
	__u32 len;
	__u32 pad;
	__u8 data[DW_BENCH_TMPL_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DW_BENCH_TMPLS);
	__type(key, __u32);
	__type(value, struct dw_bench_tmpl);
} bench_tmpl SEC(".maps");

struct dw_bench_ctx {
	struct dw_bench_args *args;
	u32 seq;
};

static long bench_copy(u32 i, struct dw_bench_ctx *c)
{
	u32 key = i % c->args->ntmpl;
	struct dw_bench_tmpl *t = bpf_map_lookup_elem(&bench_tmpl, &key);
	if (!t)
		return 1;
	u32 len = t->len;
	if (len > DW_BENCH_TMPL_MAX)
		return 1;
	asm volatile("" : "+r"(len)); /* two checks the verifier can follow, not one merged range test */
	if (len < sizeof(struct dw_event_header))
		return 1;
	((struct dw_event_header *)t->data)->ktime_ns = bpf_ktime_get_boot_ns();
	if (bpf_ringbuf_output(&events, t->data, len, 0)) {
		c->args->dropped++;
		stat_inc(DW_STAT_RINGBUF_FULL);
		return 0;
	}
	c->args->written++;
	return 0;
}

static long bench_one(u32 i, struct dw_bench_ctx *c)
{
	struct dw_exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e) + 64, 0);
	if (!e) {
		c->args->dropped++;
		stat_inc(DW_STAT_RINGBUF_FULL);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr.kind = DW_EVENT_EXEC;
	e->hdr.version = DW_EXEC_VERSION;
	e->hdr.size = sizeof(*e) + 64;
	e->hdr.ktime_ns = bpf_ktime_get_boot_ns();
	e->host_pid = 100000 + i;
	e->host_tid = 100000 + i;
	e->file_flags = DW_FILE_OVERLAY | DW_FILE_OVL_UPPER_DENTRY | DW_FILE_OVL_UPPER_ALIAS;
	/* data: "/x\0" filename, path "x\0", argv "x\0", cgroup "\0", parent "\0" */
	char *d = (char *)(e + 1);
	__builtin_memset(d, 0, 64);
	d[0] = '/'; d[1] = 'x';
	d[3] = 'x';
	d[5] = 'x';
	e->filename_len = 3;
	e->path_len = 2;
	e->path_depth = 1;
	e->argv_len = 2;
	e->cgroup_len = 1;
	e->cgparent_len = 1;
	bpf_ringbuf_submit(e, 0); /* wakes like the real programs: first record after empty */
	c->args->written++;
	return 0;
}

SEC("syscall")
int bench_generate(struct dw_bench_args *args)
{
	struct dw_bench_ctx c = { .args = args };
	args->written = 0;
	args->dropped = 0;
	if (args->ntmpl > 0 && args->ntmpl <= DW_BENCH_TMPLS)
		bpf_loop(args->count, bench_copy, &c, 0);
	else
		bpf_loop(args->count, bench_one, &c, 0);
	return 0;
}

#endif
