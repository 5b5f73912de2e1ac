// Static guest loader for kernel-matrix tests: the addon's loader core
// (dw_loader.c) and the same embedded BPF object, with text output that a
// serial console can carry. It loads, attaches the exec hook, prints
// "DWREADY", then prints every record as "DWREC <hex>" until <stop-file>
// exists, and finally "DWSTATS" with the kernel counters.
//   dwload <stop-file> [emit-all|filtered] [lsm|fentry|none] [no-sys-admin|prevent] [mmap-lsm|mmap-fentry|mmap-tracepoint]
// The third argument loads and attaches that #! script hook as well (it
// cannot load on every kernel: the guest is where it is proved). The fourth
// drops CAP_SYS_ADMIN first and keeps CAP_BPF and CAP_PERFMON, like the
// least-privilege DaemonSet: module BTF is then out of libbpf's reach.
// "prevent" turns prevention on for every drift kind in every container,
// as a policy preventing every signature does for containers not yet described.
// "mmap-*" loads and attaches that exec-mapping program too (drift.exec_mapping).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/types.h>

#include "dw_loader.h"
#include "events.h"

static void drain(struct dw_loader *l, uint8_t *buf, size_t cap)
{
	size_t n = 0;
	do {
		if (dw_loader_consume(l, buf, cap, &n))
			return;
		for (size_t off = 0; off + DW_FRAME_HEADER <= n;) {
			uint32_t len;
			memcpy(&len, buf + off, 4);
			size_t frame = dw_frame_size(len);
			printf("DWREC ");
			for (size_t i = 0; i < frame; i++)
				printf("%02x", buf[off + i]);
			printf("\n");
			off += frame;
		}
		fflush(stdout);
	} while (n > 0);
}

static int drop_sys_admin(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data))
		return -1;
	data[CAP_SYS_ADMIN / 32].effective &= ~(1U << (CAP_SYS_ADMIN % 32));
	data[CAP_SYS_ADMIN / 32].permitted &= ~(1U << (CAP_SYS_ADMIN % 32));
	if (syscall(SYS_capset, &hdr, data) || syscall(SYS_capget, &hdr, data))
		return -1;
	return (data[CAP_SYS_ADMIN / 32].effective >> (CAP_SYS_ADMIN % 32)) & 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: dwload <stop-file> [emit-all]\n");
		return 2;
	}
	struct dw_loader_opts opts = { .emit_all = argc > 2 && strcmp(argv[2], "emit-all") == 0 };
	const char *hook = argc > 3 ? argv[3] : "none";
	const char *hook_prog = NULL;
	if (strcmp(hook, "lsm") == 0) {
		opts.script_hook = DW_SCRIPT_HOOK_LSM;
		hook_prog = "lsm_bprm_check";
	} else if (strcmp(hook, "fentry") == 0) {
		opts.script_hook = DW_SCRIPT_HOOK_FENTRY;
		hook_prog = "fentry_bprm_check";
	}
	const char *mmap_prog = NULL;
	for (int i = 4; i < argc; i++) {
		if (strcmp(argv[i], "force-facts") == 0)
			opts.ovl_force_facts = 1;
		if (strcmp(argv[i], "mmap-lsm") == 0) {
			opts.mmap_hook = DW_MMAP_HOOK_LSM;
			mmap_prog = "lsm_mmap_file";
		} else if (strcmp(argv[i], "mmap-fentry") == 0) {
			opts.mmap_hook = DW_MMAP_HOOK_FENTRY;
			mmap_prog = "fentry_mmap_file";
		} else if (strcmp(argv[i], "mmap-tracepoint") == 0) {
			opts.mmap_hook = DW_MMAP_HOOK_TRACEPOINT;
			mmap_prog = "sys_enter_mmap";
		}
	}
	if (argc > 4 && strcmp(argv[4], "no-sys-admin") == 0) {
		int left = drop_sys_admin();
		printf("DWCAPS sys_admin=%d\n", left);
		if (left != 0)
			return 1;
	}
	/* The loader runs in the initial namespaces: they are the host's. */
	struct stat mnt, pid;
	if (stat("/proc/self/ns/mnt", &mnt) == 0 && stat("/proc/self/ns/pid", &pid) == 0) {
		opts.host_mnt_ns = (uint32_t)mnt.st_ino;
		opts.host_pid_ns = (uint32_t)pid.st_ino;
	}
	struct dw_loader *l;
	const char *section, *hook_section = "", *mmap_section = "";
	int err = dw_loader_open(&opts, &l);
	if (!err)
		err = dw_loader_load(l);
	if (!err)
		err = dw_loader_attach_one(l, "sched_process_exec", &section);
	if (!err && hook_prog)
		err = dw_loader_attach_one(l, hook_prog, &hook_section);
	if (!err && mmap_prog)
		err = dw_loader_attach_one(l, mmap_prog, &mmap_section);
	if (err) {
		printf("DWERROR %d %s\n%s\n", -err, strerror(-err), dw_last_log());
		return 1;
	}
	if (argc > 4 && strcmp(argv[4], "prevent") == 0) {
		/* struct dw_prevent_config: enabled, dry_run, unknown_kinds, unknown_exc_set */
		uint32_t key = 0, cfg[4] = { 1, 0, 0x3f, 0 }; /* every kind but volumes, as for unknown containers */
		err = dw_loader_map_update(l, "prevent_config", &key, sizeof(key), cfg, sizeof(cfg));
		if (err) {
			printf("DWERROR %d %s (prevent_config)\n", -err, strerror(-err));
			return 1;
		}
	}
	printf("DWREADY %s %s%s%s\n", section, hook_section, *mmap_section ? " " : "", mmap_section);
	printf("DWOVERLAY %s\n", dw_loader_overlay_path(l));
	fflush(stdout);
	static uint8_t buf[1 << 20];
	while (access(argv[1], F_OK) != 0) {
		drain(l, buf, sizeof(buf));
		usleep(20000);
	}
	drain(l, buf, sizeof(buf));
	uint64_t stats[DW_STAT_MAX];
	dw_loader_stats(l, stats, DW_STAT_MAX);
	printf("DWSTATS seen=%llu emitted=%llu filtered=%llu ringbuf_full=%llu ovl_unresolved=%llu denied=%llu prevented=%llu "
	       "mmap_seen=%llu mmap_emitted=%llu\n",
	       (unsigned long long)stats[DW_STAT_EXEC_SEEN], (unsigned long long)stats[DW_STAT_EXEC_EMITTED],
	       (unsigned long long)stats[DW_STAT_EXEC_FILTERED], (unsigned long long)stats[DW_STAT_RINGBUF_FULL],
	       (unsigned long long)stats[DW_STAT_OVL_UNRESOLVED], (unsigned long long)stats[DW_STAT_DENIED],
	       (unsigned long long)stats[DW_STAT_PREVENTED], (unsigned long long)stats[DW_STAT_MMAP_EXEC_SEEN],
	       (unsigned long long)stats[DW_STAT_MMAP_EXEC_EMITTED]);
	fflush(stdout);
	dw_loader_close(l);
	return 0;
}
