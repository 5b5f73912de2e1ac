/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Records that the kernel side hands to user space through the ring buffer.
 * This file is the ABI between bpf/tracee and src/pipeline/decode: every
 * offset here is mirrored in src/pipeline/records.ts, and test/decoder tests
 * check both against recorded kernel records. Change both or neither; bump
 * DW_EXEC_VERSION when a field moves.
 *
 * Plain fixed-width fields only: this header is included by BPF C (vmlinux
 * types) and by the native addon (linux/types.h), so no kernel struct is used.
 */
#ifndef DRIFTWATCH_EVENTS_H
#define DRIFTWATCH_EVENTS_H

enum dw_event_kind {
	DW_EVENT_EXEC = 1,
	DW_EVENT_MMAP_EXEC = 2,
};

#define DW_MMAP_VERSION 2 /* 2: ctime, so a mapped file read later is checked like an exec'd one */

#define DW_EXEC_VERSION 2

/* Every record starts with this header. size covers header and payload. */
struct dw_event_header {
	__u16 kind;
	__u16 version;
	__u32 size;
	__u64 ktime_ns; /* bpf_ktime_get_boot_ns() */
};

/* file_flags: facts about the executed file, classified in user space. */
#define DW_FILE_OVERLAY            (1U << 0) /* s_magic == OVERLAYFS_SUPER_MAGIC */
#define DW_FILE_OVL_UPPER_DENTRY   (1U << 1) /* ovl_inode->__upperdentry != NULL */
#define DW_FILE_OVL_UPPER_ALIAS    (1U << 2) /* OVL_E_UPPER_ALIAS set on the dentry */
#define DW_FILE_OVL_HAS_LOWER      (1U << 3) /* the overlay entry has a lower layer */
#define DW_FILE_OVL_LAYOUT_FSDATA  (1U << 4) /* >= 6.5 layout: d_fsdata holds the flag bits */
#define DW_FILE_OVL_LAYOUT_ENTRY   (1U << 5) /* < 6.5 layout: d_fsdata -> struct ovl_entry */
#define DW_FILE_OVL_UNRESOLVED     (1U << 6) /* overlay file, but overlay types unknown at load */
#define DW_FILE_TMPFS              (1U << 7) /* s_magic == TMPFS_MAGIC (shmem) */
#define DW_FILE_MEMFD              (1U << 8) /* anonymous shmem/hugetlb file named "memfd:..." */
#define DW_FILE_UNLINKED           (1U << 9) /* i_nlink == 0 */
#define DW_FILE_EMITTED_ALL        (1U << 10) /* emitted only because emit_all is set */
#define DW_FILE_SCRIPT             (1U << 11) /* an interpreter ran for a #! script: bprm->filename is the script */
#define DW_FILE_MNT_READONLY       (1U << 12) /* the file's mount is read-only */
#define DW_FILE_FOREIGN_NS         (1U << 13) /* task has its own mount and pid namespaces (not the host's) */
/* The file was reached through an overlay other than the process's root
 * overlay, or one whose layer holding the file is itself on overlay or tmpfs
 * (an overlay mounted inside the container). The layer bits above then
 * describe the file behind it, followed down the stack. */
#define DW_FILE_OVL_NESTED         (1U << 14)
#define DW_FILE_OVL_UNFOLLOWED     (1U << 15) /* nested, but the stack could not be followed: layer unknown */
/* What prevention did to the exec (prevent.bpf.h). Not facts about the file,
 * but kept in file_flags so the record layout stays as it is. */
#define DW_EXEC_PREVENTED          (1U << 16) /* SIGKILL sent before the new image ran */
#define DW_EXEC_WOULD_PREVENT      (1U << 17) /* dry run: it would have been stopped */
#define DW_EXEC_DENIED             (1U << 18) /* refused with -EPERM at bprm_check (BPF-LSM); comm
                                               * and argv are then the caller's, the exec never happened */
#define DW_FILE_OVL_LAYOUT_FACTS   (1U << 19) /* overlay read by layout facts (no overlay BTF), cross-checked */
/* The task's comm (or the exec'd file's own name) is in exec_watch: an image
 * exec sent only for that reason is not drift by itself (watch.bpf.h). */
#define DW_EXEC_WATCH_INTERPRETER      (1U << 20) /* an interpreter with a script-like first operand */
#define DW_EXEC_WATCH_PACKAGE_MANAGER  (1U << 21)
/* A watched interpreter in a container that prevents interpreted scripts:
 * SIGSTOP sent before its first instruction; user space kills or continues it. */
#define DW_EXEC_WATCH_HELD             (1U << 22)

/*
 * exec_watch values (maps.h): kind bits, and for interpreters the short
 * option letter that makes the first operand inline code (sh -c), in bits
 * 8-15; 0 where no option is judged in the kernel.
 */
#define DW_WATCH_INTERPRETER      (1U << 0)
#define DW_WATCH_PACKAGE_MANAGER  (1U << 1)
#define DW_WATCH_INLINE_OPT_SHIFT 8
#define DW_WATCH_MULTICALL        (1U << 16) /* busybox: by its own file name only when re-run as /proc/self/exe */

/*
 * script_flags: where the exec hook cannot see the script (at
 * sched_process_exec bprm->file is already the interpreter), a
 * bprm_check_security hook (BPF-LSM or fentry, where the kernel allows them)
 * recorded the script file's own DW_FILE_* bits (0-9 fit in 16 bits).
 * Without DW_SCRIPT_KNOWN user space looks the script up in the overlay.
 */
#define DW_SCRIPT_KNOWN      (1U << 15)
#define DW_SCRIPT_DEFERRED   (1U << 14) /* found on the exec's deferred fput list, not by a bprm_check hook */
#define DW_SCRIPT_FILE_MASK  0x3ffU

/* trunc_flags: which variable-length fields were cut short. */
#define DW_TRUNC_FILENAME (1U << 0)
#define DW_TRUNC_PATH     (1U << 1) /* too deep or too long: path is a suffix */
#define DW_TRUNC_ARGV     (1U << 2)
#define DW_TRUNC_CGROUP   (1U << 3)

#define DW_MAX_FILENAME   256
#define DW_MAX_PATH       1024
#define DW_MAX_PATH_DEPTH 32
#define DW_MAX_ARGV       1024
#define DW_MAX_CGROUP     128
#define DW_MAX_ANCESTORS  4  /* recorded; the session walk looks further */
#define DW_EXEC_DATA_MAX  (DW_MAX_FILENAME + DW_MAX_PATH + DW_MAX_ARGV + 2 * DW_MAX_CGROUP)

/* Where the process sits in its pid namespace's process tree. */
enum dw_session {
	DW_SESSION_UNKNOWN = 0, /* ancestry deeper than the walk */
	DW_SESSION_INIT = 1,    /* descends from the namespace's init (pid 1): the app itself */
	DW_SESSION_EXEC = 2,    /* its in-namespace ancestry starts at a process whose parent is
	                         * outside the namespace and is not pid 1: podman/kubectl exec, nsenter */
	DW_SESSION_HOST = 3,    /* the initial pid namespace */
};

struct dw_ancestor {
	__u32 host_pid;
	char comm[16];
};

/*
 * One exec. Fixed part, then data[]:
 *   filename   bprm->filename, NUL-terminated, filename_len bytes incl. NUL
 *   path       path components of the executed file from leaf to the task's
 *              root, each NUL-terminated, path_len bytes, path_depth parts
 *   argv       raw mm->arg_start..arg_end, NUL-separated, argv_len bytes
 *   cgroup     leaf name of the task's cgroup, NUL-terminated (default
 *              hierarchy; on hosts without one, the memory/pids v1 hierarchy)
 *   cgparent   name of that cgroup's parent, NUL-terminated (pod slices)
 * Fixed part is 232 bytes since version 2.
 */
struct dw_exec_event {
	struct dw_event_header hdr; /* 0 */
	__u32 host_pid;             /* 16 tgid in the initial pid namespace */
	__u32 host_tid;             /* 20 */
	__u32 host_ppid;            /* 24 real_parent tgid */
	__u32 ns_pid;               /* 28 tgid as the task's own pid namespace sees it */
	__u32 ns_tid;               /* 32 */
	__u32 ns_ppid;              /* 36 0 when the parent is outside that namespace */
	__u32 uid;                  /* 40 */
	__u32 gid;                  /* 44 */
	__u64 cgroup_id;            /* 48 default-hierarchy cgroup id */
	__u32 mnt_ns;               /* 56 mount namespace inode */
	__u32 pid_ns;               /* 60 pid namespace inode */
	__u64 inode;                /* 64 */
	__u32 dev;                  /* 72 kernel dev_t (major << 20 | minor) */
	__u32 mode;                 /* 76 */
	__u32 nlink;                /* 80 */
	__u32 fs_magic;             /* 84 */
	__s64 ctime_sec;            /* 88 */
	__u32 ctime_nsec;           /* 96 */
	__u32 file_flags;           /* 100 DW_FILE_* */
	__u32 trunc_flags;          /* 104 DW_TRUNC_* */
	__u16 filename_len;         /* 108 */
	__u16 path_len;             /* 110 */
	__u16 argv_len;             /* 112 */
	__u16 cgroup_len;           /* 114 */
	__u16 path_depth;           /* 116 */
	__u16 script_flags;         /* 118 DW_SCRIPT_KNOWN | the #! script's own DW_FILE_* bits 0-9 */
	__u64 start_time_ns;        /* 120 task start, boot clock: (host_pid, start) is unique */
	char comm[16];              /* 128 comm after exec */
	__u8 session;               /* 144 enum dw_session */
	__u8 ancestors_len;         /* 145 entries used in ancestors[] */
	__u16 cgparent_len;         /* 146 */
	__u32 session_host_pid;     /* 148 the in-namespace ancestor the walk stopped at */
	struct dw_ancestor ancestors[DW_MAX_ANCESTORS]; /* 152 parent first, 20 bytes each */
	char data[];                /* 232 */
};

/*
 * A file mapped executable (mmap with PROT_EXEC) that is a drift candidate:
 * a dropped shared library (LD_PRELOAD), or a dropped binary run through
 * ld.so without exec. data[]: path (leaf first, like exec), cgroup, cgparent.
 */
struct dw_mmap_event {
	struct dw_event_header hdr; /* 0 */
	__u32 host_pid;             /* 16 */
	__u32 host_tid;             /* 20 */
	__u32 ns_pid;               /* 24 */
	__u32 uid;                  /* 28 */
	__u64 cgroup_id;            /* 32 */
	__u32 mnt_ns;               /* 40 */
	__u32 pid_ns;               /* 44 */
	__u64 inode;                /* 48 */
	__u32 dev;                  /* 56 */
	__u32 mode;                 /* 60 */
	__u32 nlink;                /* 64 */
	__u32 fs_magic;             /* 68 */
	__u32 file_flags;           /* 72 */
	__u32 prot;                 /* 76 */
	__u32 mmap_flags;           /* 80 */
	__u16 path_len;             /* 84 */
	__u16 path_depth;           /* 86 */
	__u16 cgroup_len;           /* 88 */
	__u16 cgparent_len;         /* 90 */
	__u32 trunc_flags;          /* 92 */
	__u64 start_time_ns;        /* 96 */
	char comm[16];              /* 104 */
	__s64 ctime_sec;            /* 120 since version 2 */
	__u32 ctime_nsec;           /* 128 */
	__u32 pad;                  /* 132 */
	char data[];                /* 136 */
};

/* Per-CPU counters in the "stats" map; index names mirrored in TS. */
enum dw_stat {
	DW_STAT_EXEC_SEEN = 0,
	DW_STAT_EXEC_EMITTED,
	DW_STAT_EXEC_FILTERED,
	DW_STAT_RINGBUF_FULL,
	DW_STAT_SCRATCH_MISS,
	DW_STAT_OVL_UNRESOLVED,
	DW_STAT_PATH_TRUNCATED,
	DW_STAT_CGROUP_V1_FALLBACK,
	DW_STAT_MMAP_EXEC_SEEN,
	DW_STAT_MMAP_EXEC_EMITTED,
	DW_STAT_OVL_NESTED,     /* execs through an overlay mounted inside a container */
	DW_STAT_OVL_UNFOLLOWED, /* of those, whose backing file could not be followed */
	DW_STAT_PREVENTED,         /* SIGKILL sent at sched_process_exec */
	DW_STAT_DENIED,            /* -EPERM at bprm_check */
	DW_STAT_WOULD_PREVENT,     /* dry run */
	DW_STAT_PREVENT_EXCEPTED,  /* an exception let a stoppable exec run */
	DW_STAT_PREVENT_PATH_LONG, /* path too long or deep for exceptions: judged without them */
	DW_STAT_PREVENT_FAILED,    /* bpf_send_signal refused: the exec ran */
	DW_STAT_PREVENT_SCRIPT_UNSEEN, /* a #! script's own file was not found at exec: judged by its interpreter */
	DW_STAT_SCRIPT_UNSEEN, /* a #! exec whose script file the kernel side could not find */
	DW_STAT_WATCH_EMITTED, /* image execs sent because exec_watch matched */
	DW_STAT_WATCH_INLINE,  /* watched interpreter execs dropped: inline code (sh -c) */
	DW_STAT_WATCH_NO_OPERAND, /* watched interpreter execs dropped: no operand (REPL, stdin) */
	DW_STAT_WATCH_HELD,       /* watched interpreter execs stopped for user space's verdict */
	DW_STAT_WATCH_HOLD_FAILED, /* SIGSTOP refused: the interpreter ran unheld */
	DW_STAT_MAX,
};

#endif
