// The executed file's layer, from the kernel's file flags. Every test is a
// bitwise AND: a peer once wrote `|` here and its drift flags never failed.
import { FileFlag } from './records.js';

export type Layer = 'LOWER' | 'UPPER_NEW' | 'UPPER_COPIED_UP' | 'MEMFD' | 'TMPFS' | 'OTHER';

const has = (flags: number, bit: number): boolean => (flags & bit) !== 0;

export function classify(flags: number): Layer {
  if (has(flags, FileFlag.MEMFD)) return 'MEMFD';
  if (has(flags, FileFlag.TMPFS)) return 'TMPFS';
  if (!has(flags, FileFlag.OVERLAY)) return 'OTHER';
  const upper = has(flags, FileFlag.OVL_UPPER_DENTRY) && has(flags, FileFlag.OVL_UPPER_ALIAS);
  if (!upper) return 'LOWER';
  return has(flags, FileFlag.OVL_HAS_LOWER) ? 'UPPER_COPIED_UP' : 'UPPER_NEW';
}

export const isUnlinked = (flags: number): boolean => has(flags, FileFlag.UNLINKED);
