// The executed file's layer, from the kernel's file flags. Every test is a
// bitwise AND: a peer once wrote `|` here and its drift flags never failed.
import { FileFlag } from './records.js';

export type Layer = 'LOWER' | 'UPPER_NEW' | 'UPPER_COPIED_UP' | 'MEMFD' | 'TMPFS' | 'OTHER' | 'UNKNOWN';

const has = (flags: number, bit: number): boolean => (flags & bit) !== 0;

export function classify(flags: number): Layer {
  if (has(flags, FileFlag.MEMFD)) return 'MEMFD';
  if (has(flags, FileFlag.TMPFS)) return 'TMPFS';
  if (!has(flags, FileFlag.OVERLAY)) return 'OTHER';
  // Overlay types unknown at load, or a nested overlay the kernel could not
  // follow: never image content.
  if (has(flags, FileFlag.OVL_UNRESOLVED) || has(flags, FileFlag.OVL_UNFOLLOWED)) return 'UNKNOWN';
  const upper = has(flags, FileFlag.OVL_UPPER_DENTRY) && has(flags, FileFlag.OVL_UPPER_ALIAS);
  if (!upper) return 'LOWER';
  return has(flags, FileFlag.OVL_HAS_LOWER) ? 'UPPER_COPIED_UP' : 'UPPER_NEW';
}

/** Reached through an overlay mounted inside the container (the layer is the file behind it). */
export const isNestedOverlay = (flags: number): boolean => has(flags, FileFlag.OVL_NESTED);

export const isUnlinked = (flags: number): boolean => has(flags, FileFlag.UNLINKED);
