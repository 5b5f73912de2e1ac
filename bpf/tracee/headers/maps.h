/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
#ifndef DRIFTWATCH_MAPS_H
#define DRIFTWATCH_MAPS_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include "events.h"

/* Variable data is written at offsets masked with DW_SCRATCH_MASK; the
 * scratch area is twice that so any masked write of <= DW_SCRATCH_MASK+1
 * bytes stays inside the map value, which is what the verifier checks. */
#define DW_SCRATCH_HALF 4096
#define DW_SCRATCH_MASK (DW_SCRATCH_HALF - 1)

struct dw_exec_scratch {
	struct dw_exec_event e;
	char data[2 * DW_SCRATCH_HALF];
};

/* Size is set by user space before load (bpf_map__set_max_entries). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

/* The record is built here, not on the 512-byte BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct dw_exec_scratch);
} exec_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DW_STAT_MAX);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

/* Image execs user space still wants, by the task's comm after exec
 * (NUL-padded, at most 15 bytes); filled from config at start. */
struct dw_watch_key {
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct dw_watch_key);
	__type(value, u32); /* DW_WATCH_* */
} exec_watch SEC(".maps");

static __always_inline void stat_inc(u32 idx)
{
	u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

#endif
