// Facts about files in a container that the kernel record cannot carry:
// content hashes, whether a copied-up file still has the image's content, and
// which layer a #! script is in (the exec record's file is its interpreter).
// Every file is opened through safe-open: inside the root it belongs to, and
// trusted only when it is the file the kernel saw (see safe-open.ts). The
// overlay's dirs come from the container's root mount options (upperdir,
// lowerdir), cached per mount namespace.
import { readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { openInRoot, openProcessExe, type HashResult, type KernelFileId, type Opened, type UnreadableReason } from './safe-open.js';

export interface OverlayDirs {
  upper: string;
  lowers: string[];
}

/** Unescapes mountinfo's octal escapes (\040 for space, ...). */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The overlay mounted at "/" in a mountinfo text, if any. */
export function rootOverlayFromMountinfo(text: string): OverlayDirs | null {
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const mountPoint = left.split(' ')[4];
    const [fstype, , superOpts] = right.split(' ');
    if (mountPoint !== '/' || fstype !== 'overlay' || !superOpts) continue;
    const opts = new Map<string, string>();
    // lowerdir may hold ':'-separated paths; options are ','-separated.
    for (const kv of superOpts.split(',')) {
      const eq = kv.indexOf('=');
      if (eq > 0) opts.set(kv.slice(0, eq), unescape(kv.slice(eq + 1)));
    }
    const upper = opts.get('upperdir');
    const lower = opts.get('lowerdir');
    if (!upper || !lower) continue;
    return { upper, lowers: lower.split(':').filter(Boolean) };
  }
  return null;
}

export interface OverlayFactsOptions {
  procRoot?: string;
  /** Where host paths (upperdir, lowerdir) are visible to the sensor; '' when it runs in the host mount namespace. */
  hostRoot?: string;
  /** Files larger than this are not hashed (too_large). */
  maxHashBytes?: number;
}

/** The file a record names, and where the sensor may look for it. */
export interface ExecutedFile {
  /** The kernel's identity of the file: only this file's content is hashed. */
  id: KernelFileId;
  /** The path inside the container, when the kernel resolved it fully. */
  path?: string;
  /** /proc/<pid>/exe is this file (an exec record's process). */
  exePid?: number;
  /** Processes that may still be in the container: the process, its ancestors. */
  rootPids: number[];
  /** The container's mount namespace: only a process in it sees the container's root. */
  mntNs: number;
  /** The file lives in the overlay's upper layer (not a tmpfs, volume or memfd). */
  upper: boolean;
  /** Created in the container (not copied up): its upper-dir file is the same inode. */
  upperNew: boolean;
  dirs: OverlayDirs | null;
}

/** Which failure says most about the file: evidence of a swap first. */
const REASON_RANK: Record<UnreadableReason, number> = { too_large: 4, replaced: 3, not_regular: 2, unavailable: 1, gone: 0 };
const worse = (a: UnreadableReason | undefined, b: UnreadableReason): UnreadableReason => (a && REASON_RANK[a] >= REASON_RANK[b] ? a : b);

const idKey = (f: KernelFileId) => `${f.dev}:${f.inode}:${f.ctimeSec ?? '-'}:${f.ctimeNsec ?? '-'}`;

export class OverlayFacts {
  private dirs = new LRUCache<number, OverlayDirs>({ max: 2048, ttl: 10 * 60_000 });
  /** Hashes by file identity only (the kernel's, or a lower file's own): never served for another file. */
  private hashes = new LRUCache<string, string>({ max: 4096 });
  /** Recent failures, so a respawning payload does not cost failed opens each time. */
  private misses = new LRUCache<string, UnreadableReason>({ max: 4096, ttl: 5_000 });
  private pidMisses = new LRUCache<number, true>({ max: 4096, ttl: 5_000 });
  private readonly procRoot: string;
  private readonly hostRoot: string;
  private readonly maxBytes: number | undefined;

  constructor(opts: OverlayFactsOptions = {}) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.hostRoot = opts.hostRoot ?? '';
    this.maxBytes = opts.maxHashBytes;
  }

  /**
   * The container's overlay dirs, read through the first of the given
   * processes that is still alive and has the overlay as its root (the
   * process itself, else its ancestors up to the container's init).
   * Only answers are cached: a miss may succeed with the next event.
   */
  async overlayOf(mntNs: number, hostPids: number[]): Promise<OverlayDirs | null> {
    for (const pid of hostPids) {
      if (pid <= 0 || this.pidMisses.has(pid)) continue;
      try {
        const d = rootOverlayFromMountinfo(await readFile(`${this.procRoot}/${pid}/mountinfo`, 'utf8'));
        if (d) {
          this.dirs.set(mntNs, d);
          return d;
        }
      } catch {
        this.pidMisses.set(pid, true); // gone: try the next one
      }
    }
    // Nobody left to ask: fall back to what an earlier event saw. Namespace
    // inode numbers are reused, so only trust it while its upper dir exists
    // (and the identity checks on every file read make a stale entry harmless).
    const cached = this.dirs.get(mntNs);
    if (cached && (await stat(this.host(cached.upper)).then(() => true, () => false))) return cached;
    return null;
  }

  private host(p: string): string {
    return this.hostRoot ? join(this.hostRoot, p) : p;
  }

  private async hashOpened(opened: Opened, key?: string): Promise<HashResult> {
    if (!opened.ok) return { reason: opened.reason };
    try {
      const k = key ?? `file:${opened.file.stat.dev}:${opened.file.stat.ino}:${opened.file.stat.ctimeNs}:${opened.file.stat.size}`;
      const hit = this.hashes.get(k);
      if (hit) return { sha256: hit };
      const r = await opened.file.sha256();
      if (r.sha256) this.hashes.set(k, r.sha256);
      return r;
    } finally {
      await opened.file.close();
    }
  }

  /**
   * Hash of the file the kernel executed (or mapped), or why there is none.
   * Tried in order: /proc/<pid>/exe while the process lives; the path in the
   * container's root through a process still in it; the overlay's upper dir
   * (files created in the container). Each answer must be the recorded file.
   */
  async executedHash(f: ExecutedFile): Promise<HashResult> {
    const key = `exec:${idKey(f.id)}`;
    const hit = this.hashes.get(key);
    if (hit) return { sha256: hit };
    // A miss is remembered for these processes only: the next exec of the same file may be readable.
    const missKey = `${key}\0${f.exePid ?? ''}\0${f.rootPids.join(',')}`;
    const missed = this.misses.get(missKey);
    if (missed) return { reason: missed };
    const opts = { expect: { kind: 'same' as const, file: f.id }, ...(this.maxBytes ? { maxBytes: this.maxBytes } : {}) };
    let reason: UnreadableReason | undefined;
    const attempt = async (opened: Opened): Promise<string | undefined> => {
      const r = await this.hashOpened(opened, key);
      if (r.reason === undefined) return r.sha256;
      reason = worse(reason, r.reason);
      return undefined;
    };
    const done = (sha256: string | undefined): HashResult => {
      if (sha256) return { sha256 };
      this.misses.set(missKey, reason ?? 'gone');
      return { reason: reason ?? 'gone' };
    };
    if (f.exePid) {
      const sha = await attempt(await openProcessExe(this.procRoot, f.exePid, opts));
      if (sha || reason === 'too_large') return done(sha);
    }
    if (!f.path?.startsWith('/')) return done(undefined); // memfd, unlinked, or a truncated path
    for (const pid of new Set(f.rootPids)) {
      if (pid <= 0 || this.pidMisses.has(pid)) continue;
      // An ancestor outside the container (the runtime, a shell on the host) sees another root,
      // where the same path may name some other file: not a swap, just not the container.
      if (!(await this.inMountNs(pid, f.mntNs))) continue;
      // A file on the root overlay is on the root's own mount; tmpfs and volumes are mounted below it.
      const opened = await openInRoot(`${this.procRoot}/${pid}/root`, f.path, { ...opts, crossMounts: !f.upper });
      if (!opened.ok && opened.failedAt === 'root') {
        if (opened.reason === 'gone') this.pidMisses.set(pid, true);
        else reason = worse(reason, opened.reason);
        continue;
      }
      const sha = await attempt(opened);
      if (sha || reason === 'too_large' || reason === 'replaced' || reason === 'not_regular') return done(sha);
    }
    if (f.upperNew && f.dirs) {
      const opened = await openInRoot(this.host(f.dirs.upper), f.path, { ...opts, expect: { kind: 'upper', file: f.id } });
      return done(await attempt(opened));
    }
    return done(undefined);
  }

  private async inMountNs(pid: number, mntNs: number): Promise<boolean> {
    const ns = await readlink(`${this.procRoot}/${pid}/ns/mnt`).catch(() => '');
    return ns === `mnt:[${mntNs}]`;
  }

  /** Layer of a path inside the container (by name, for #! scripts); undefined when it cannot be told. */
  async layerOf(dirs: OverlayDirs, path: string): Promise<'LOWER' | 'UPPER_NEW' | 'UPPER_COPIED_UP' | undefined> {
    if (!path.startsWith('/')) return undefined;
    const present = async (root: string): Promise<boolean | undefined> => {
      const opened = await openInRoot(this.host(root), path, { expect: { kind: 'any' } });
      if (opened.ok) {
        await opened.file.close();
        return true;
      }
      // Nothing there: look further down. Anything else (a whiteout, a symlink, a FIFO) is no answer.
      return opened.reason === 'gone' ? false : undefined;
    };
    const inUpper = await present(dirs.upper);
    if (inUpper === undefined) return undefined;
    for (const l of dirs.lowers) {
      const inLower = await present(l);
      if (inLower === undefined) return undefined;
      if (inLower) return inUpper ? 'UPPER_COPIED_UP' : 'LOWER';
    }
    return inUpper ? 'UPPER_NEW' : undefined;
  }

  /** Content hash of the image's copy of path (the first lower layer that has it), or why there is none. */
  async imageHash(dirs: OverlayDirs, path: string): Promise<HashResult> {
    for (const l of dirs.lowers) {
      const opened = await openInRoot(this.host(l), path, { expect: { kind: 'any' }, ...(this.maxBytes ? { maxBytes: this.maxBytes } : {}) });
      if (!opened.ok && opened.reason === 'gone') continue;
      return this.hashOpened(opened);
    }
    return { reason: 'gone' };
  }
}
