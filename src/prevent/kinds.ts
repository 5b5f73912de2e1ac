// Drift kinds: what the kernel can tell about an exec without user space,
// one bit each (DW_KIND_* in bpf/tracee/prevent.bpf.h). A signature can be
// set to prevent only if the kernel can decide it from these alone.
export const Kind = {
  UPPER_NEW: 1 << 0,
  UPPER_COPIED: 1 << 1,
  MEMFD: 1 << 2,
  UNLINKED: 1 << 3,
  TMPFS: 1 << 4,
  SCRIPT: 1 << 5,
  VOLUME: 1 << 6,
  /** A watched interpreter with a script operand: held stopped until user space has judged the script (watch.bpf.h). */
  INTERPRETED: 1 << 7,
} as const;

/** The built-in signatures the kernel can enforce, and the kinds they stand for. */
export const PREVENTABLE: Readonly<Record<string, number>> = {
  'drift.new_executable': Kind.UPPER_NEW,
  'drift.modified_executable': Kind.UPPER_COPIED,
  'drift.fileless_exec': Kind.MEMFD | Kind.UNLINKED,
  'drift.tmpfs_exec': Kind.TMPFS,
  'drift.new_script': Kind.SCRIPT,
  'drift.volume_exec': Kind.VOLUME,
  'drift.interpreted_script': Kind.INTERPRETED,
};
