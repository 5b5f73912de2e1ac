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
};

struct dw_bench_ctx {
	struct dw_bench_args *args;
	u32 seq;
};

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
	bpf_loop(args->count, bench_one, &c, 0);
	return 0;
}

#endif
