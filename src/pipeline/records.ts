// Byte layout of the kernel's records: a mirror of bpf/tracee/headers/events.h.
// test/unit/kernel-contract.test.ts holds every offset and size against the
// BTF of the built object and every flag bit against the header; decoder
// tests check them against records captured from the kernel.

export const EventKind = { EXEC: 1, MMAP_EXEC: 2 } as const;
export const EXEC_VERSION = 2;
export const MMAP_VERSION = 2;

export const FRAME_HEADER = 8; // [u32 len][u32 0] before each record in a batch

export const HDR = { kind: 0, version: 2, size: 4, ktimeNs: 8 } as const;
export const HEADER_SIZE = 16;

export const EXEC = {
  hostPid: 16,
  hostTid: 20,
  hostPpid: 24,
  nsPid: 28,
  nsTid: 32,
  nsPpid: 36,
  uid: 40,
  gid: 44,
  cgroupId: 48,
  mntNs: 56,
  pidNs: 60,
  inode: 64,
  dev: 72,
  mode: 76,
  nlink: 80,
  fsMagic: 84,
  ctimeSec: 88,
  ctimeNsec: 96,
  fileFlags: 100,
  truncFlags: 104,
  filenameLen: 108,
  pathLen: 110,
  argvLen: 112,
  cgroupLen: 114,
  pathDepth: 116,
  scriptFlags: 118,
  startTimeNs: 120,
  comm: 128,
  session: 144,
  ancestorsLen: 145,
  cgparentLen: 146,
  sessionHostPid: 148,
  ancestors: 152,
  data: 232,
} as const;
export const MMAP = {
  hostPid: 16,
  hostTid: 20,
  nsPid: 24,
  uid: 28,
  cgroupId: 32,
  mntNs: 40,
  pidNs: 44,
  inode: 48,
  dev: 56,
  mode: 60,
  nlink: 64,
  fsMagic: 68,
  fileFlags: 72,
  prot: 76,
  mmapFlags: 80,
  pathLen: 84,
  pathDepth: 86,
  cgroupLen: 88,
  cgparentLen: 90,
  truncFlags: 92,
  startTimeNs: 96,
  comm: 104,
  ctimeSec: 120,
  ctimeNsec: 128,
  data: 136,
} as const;

export const COMM_LEN = 16;
export const ANCESTOR_SIZE = 20;
export const MAX_ANCESTORS = 4;

export const FileFlag = {
  OVERLAY: 1 << 0,
  OVL_UPPER_DENTRY: 1 << 1,
  OVL_UPPER_ALIAS: 1 << 2,
  OVL_HAS_LOWER: 1 << 3,
  OVL_LAYOUT_FSDATA: 1 << 4,
  OVL_LAYOUT_ENTRY: 1 << 5,
  OVL_UNRESOLVED: 1 << 6,
  TMPFS: 1 << 7,
  MEMFD: 1 << 8,
  UNLINKED: 1 << 9,
  EMITTED_ALL: 1 << 10,
  SCRIPT: 1 << 11,
  MNT_READONLY: 1 << 12,
  FOREIGN_NS: 1 << 13,
  /** Reached through an overlay mounted inside the container; the layer bits describe the file behind it. */
  OVL_NESTED: 1 << 14,
  /** Nested, but the kernel could not follow the stack to the file behind it: layer unknown. */
  OVL_UNFOLLOWED: 1 << 15,
  /** Overlay read by layout facts checked against the kernel's own data (no overlay BTF on this kernel). */
  OVL_LAYOUT_FACTS: 1 << 19,
} as const;

/** What prevention did to the exec (DW_EXEC_* in events.h; kept in file_flags). */
export const ExecOutcome = {
  PREVENTED: 1 << 16,
  WOULD_PREVENT: 1 << 17,
  DENIED: 1 << 18,
} as const;

/** Image execs sent because exec_watch matched their comm or file name (DW_EXEC_WATCH_* in events.h). */
export const ExecWatch = {
  INTERPRETER: 1 << 20,
  PACKAGE_MANAGER: 1 << 21,
  /** Stopped (SIGSTOP) before its first instruction: user space kills or continues it. */
  HELD: 1 << 22,
} as const;

/** exec_watch map values (DW_WATCH_* in events.h): kind bits, and an interpreter's inline-code option letter. */
export const WatchKind = { INTERPRETER: 1 << 0, PACKAGE_MANAGER: 1 << 1 } as const;
export const WATCH_INLINE_OPT_SHIFT = 8;
/** A multi-call binary (busybox): matched by its own file name only when re-run through /proc/self/exe. */
export const WATCH_MULTICALL = 1 << 16;
/** comm is the exec'd file's basename cut to this many bytes (TASK_COMM_LEN - 1). */
export const WATCH_COMM_MAX = 15;

/** script_flags (u16): the #! script's own FileFlag bits 0-9, valid with KNOWN (set by a bprm_check hook). */
export const ScriptFlag = {
  KNOWN: 1 << 15,
  /** Found on the exec's deferred-release list at sched_process_exec (no bprm_check hook needed). */
  DEFERRED: 1 << 14,
  FILE_MASK: 0x3ff,
} as const;

export const TruncFlag = { FILENAME: 1 << 0, PATH: 1 << 1, ARGV: 1 << 2, CGROUP: 1 << 3 } as const;

export const Session = { UNKNOWN: 0, INIT: 1, EXEC: 2, HOST: 3 } as const;
export const SESSION_NAMES = ['unknown', 'init', 'exec', 'host'] as const;
export type SessionName = (typeof SESSION_NAMES)[number];

export const FS_MAGIC = { OVERLAY: 0x794c7630, TMPFS: 0x01021994 } as const;
