// Reads a file on a container's behalf only when it is the file the kernel
// recorded: the path is opened once (no symlink at the end, no blocking on
// a FIFO), the open file's inode and ctime (and device, where the path shows
// the same filesystem the kernel saw) are compared with the record, and the
// hash is read from that same descriptor. A file swapped in between, or
// changed since the exec (its ctime moved), is refused, not hashed.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { createHash } from 'node:crypto';

export const MAX_HASH_BYTES = 256 << 20;

export interface FileIdentity {
  /** "major:minor" of the filesystem the kernel saw the file on. */
  device: string;
  inode: bigint;
  ctimeSec: bigint;
  ctimeNsec: number;
}

export type Refusal = 'gone' | 'changed' | 'too_large' | 'unreadable';
export type VerifiedHash = { sha256: string } | { refused: Refusal };

/** "major:minor" of a userspace dev_t (glibc's encoding, as stat returns it). */
export function deviceString(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

export interface VerifyOptions {
  /**
   * The path shows the file through the filesystem the kernel saw (the
   * container's root via /proc/<pid>/root, /proc/<pid>/exe): the device
   * must match too. False for an overlay's upper directory, which is
   * another filesystem; overlay reports the upper inode's number (the low
   * bits of it where xino tags the layer) and copies its ctime.
   */
  sameDevice: boolean;
  /** Follow a final symlink: only for /proc/<pid>/exe, a magic link to the very file. */
  followLink?: boolean;
  /**
   * Inode numbers of the image copies at the same path: overlay keeps a
   * copied-up file's original inode number, so the kernel recorded one of
   * these rather than the upper file's own (the ctime is the upper file's).
   */
  origins?: bigint[];
}

export async function hashIfSame(path: string, want: FileIdentity, opts: VerifyOptions): Promise<VerifiedHash> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | (opts.followLink ? 0 : constants.O_NOFOLLOW) | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { refused: code === 'ENOENT' || code === 'ESRCH' || code === 'ENOTDIR' ? 'gone' : code === 'ELOOP' ? 'changed' : 'unreadable' };
  }
  try {
    const st = await fh.stat({ bigint: true });
    const ctimeNs = want.ctimeSec * 1_000_000_000n + BigInt(want.ctimeNsec);
    const low = (n: bigint) => n & 0xffffffffn;
    const sameInode = opts.sameDevice
      ? st.ino === want.inode
      : low(st.ino) === low(want.inode) || (opts.origins ?? []).some((o) => low(o) === low(want.inode));
    if (!st.isFile() || !sameInode || st.ctimeNs !== ctimeNs || (opts.sameDevice && deviceString(st.dev) !== want.device)) {
      return { refused: 'changed' };
    }
    if (st.size > BigInt(MAX_HASH_BYTES)) return { refused: 'too_large' };
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(1 << 16);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return { sha256: h.digest('hex') };
  } catch {
    return { refused: 'unreadable' };
  } finally {
    await fh.close().catch(() => undefined);
  }
}
