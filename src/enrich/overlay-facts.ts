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
import type { FactsSource } from '../sdk/signature.js';
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
  /** Called for every file actually read to be hashed (not for cache hits). */
  onHashRead?: () => void;
}

/** The file a record names, and where the sensor may look for it. */
export interface ExecutedFile {
  /** The kernel's identity of the file: only this file's content is hashed. */
  id: KernelFileId;
  /** The path inside the container, when the kernel resolved it fully. */
  path?: string;
  /** /proc/<pid>/exe is this file (an exec record's process). */
  exePid?: number;
  /**
   * Processes that may still be in the container: the process, its ancestors,
   * other live members of its cgroup (only those in mntNs are used).
   */
  rootPids: number[];
  /** The container's mount namespace: only a process in it sees the container's root. */
  mntNs: number;
  /** The file lives in the overlay's upper layer (not a tmpfs, volume or memfd). */
  upper: boolean;
  /** Created in the container (not copied up): its upper-dir file is the same inode. */
  upperNew: boolean;
  /** From a live process's mounts, or the runtime's storage once the container's processes are gone. */
  dirs: OverlayDirs | null;
}

/**
 * An executed file's hash and where it was read, or why it was not:
 * container_gone when no process of the container was alive in its mount
 * namespace and there was no upper dir to look in.
 */
export type ExecutedHash =
  | { sha256: string; source: FactsSource; reason?: undefined }
  | { sha256?: undefined; reason: UnreadableReason | 'container_gone' };

/** Which failure says most about the file: evidence of a swap first. */
const REASON_RANK: Record<UnreadableReason, number> = { too_large: 4, replaced: 3, not_regular: 2, unavailable: 1, gone: 0 };
const worse = (a: UnreadableReason | undefined, b: UnreadableReason): UnreadableReason => (a && REASON_RANK[a] >= REASON_RANK[b] ? a : b);

export const idKey = (f: KernelFileId) => `${f.dev}:${f.inode}:${f.ctimeSec ?? '-'}:${f.ctimeNsec ?? '-'}`;

export class OverlayFacts {
  private dirs = new LRUCache<number, OverlayDirs>({ max: 2048, ttl: 10 * 60_000 });
  /** Hashes by file identity only (the kernel's, or a lower file's own): never served for another file. */
  private hashes = new LRUCache<string, string>({ max: 4096 });
  /** Recent failures, so a respawning payload does not cost failed opens each time. */
  private misses = new LRUCache<string, UnreadableReason | 'container_gone'>({ max: 4096, ttl: 5_000 });
  /** Where an executed file's cached hash was read. */
  private sources = new LRUCache<string, FactsSource>({ max: 4096 });
  private pidMisses = new LRUCache<number, true>({ max: 4096, ttl: 5_000 });
  /** Lookups under way by file identity: a burst of execs of one new file reads it once. */
  private pending = new Map<string, Promise<ExecutedHash>>();
  private readonly onHashRead: (() => void) | undefined;
  private readonly procRoot: string;
  private readonly hostRoot: string;
  private readonly maxBytes: number | undefined;

  constructor(opts: OverlayFactsOptions = {}) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.hostRoot = opts.hostRoot ?? '';
    this.maxBytes = opts.maxHashBytes;
    this.onHashRead = opts.onHashRead;
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
      this.onHashRead?.();
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
   * (files created in the container, and copied-up files through their image
   * copies' inode numbers). Each answer must be the recorded file.
   */
  async executedHash(f: ExecutedFile): Promise<ExecutedHash> {
    const key = `exec:${idKey(f.id)}`;
    const known = this.knownHash(f.id);
    if (known) return known;
    const pending = this.pending.get(key);
    if (pending) {
      const r = await pending;
      // A miss belongs to the first caller's processes; these may still reach the file.
      if (r.sha256) return r;
    }
    const lookup = this.lookUpExecutedHash(f, key);
    if (!pending) {
      this.pending.set(key, lookup);
      void lookup.finally(() => this.pending.delete(key));
    }
    return lookup;
  }

  /** The hash already read for the file the kernel identified, if any: no file system call. */
  knownHash(id: KernelFileId): { sha256: string; source: FactsSource } | undefined {
    const key = `exec:${idKey(id)}`;
    const hit = this.hashes.get(key);
    return hit ? { sha256: hit, source: this.sources.get(key) ?? 'process' } : undefined;
  }

  private async lookUpExecutedHash(f: ExecutedFile, key: string): Promise<ExecutedHash> {
    const hit = this.hashes.get(key);
    if (hit) return { sha256: hit, source: this.sources.get(key) ?? 'process' };
    // A miss is remembered for these processes only: the next exec of the same file may be readable.
    const missKey = `${key}\0${f.exePid ?? ''}\0${f.rootPids.join(',')}`;
    const missed = this.misses.get(missKey);
    if (missed) return { reason: missed };
    const opts = { expect: { kind: 'same' as const, file: f.id }, ...(this.maxBytes ? { maxBytes: this.maxBytes } : {}) };
    let reason: UnreadableReason | undefined;
    let source: FactsSource = 'process';
    let places = 0; // container roots and upper dirs looked into: the exec'd pid may be gone or reused
    const attempt = async (opened: Opened, from: FactsSource): Promise<string | undefined> => {
      source = from;
      const r = await this.hashOpened(opened, key);
      if (r.reason === undefined) return r.sha256;
      reason = worse(reason, r.reason);
      return undefined;
    };
    const done = (sha256: string | undefined): ExecutedHash => {
      if (sha256) {
        this.sources.set(key, source);
        return { sha256, source };
      }
      const why = reason ?? (places === 0 && f.path?.startsWith('/') ? 'container_gone' : 'gone');
      this.misses.set(missKey, why);
      return { reason: why };
    };
    if (f.exePid) {
      const sha = await attempt(await openProcessExe(this.procRoot, f.exePid, opts), 'process');
      if (sha || reason === 'too_large') return done(sha);
    }
    if (!f.path?.startsWith('/')) return done(undefined); // memfd, unlinked, or a truncated path
    // From here the container's places explain a miss: the exec'd pid may be gone or reused.
    reason = undefined;
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
      places++;
      const sha = await attempt(opened, 'container_process');
      // Another file at the path may only be another root: a process in the same mount
      // namespace can be chrooted elsewhere (a cgroup member, an ancestor). The next
      // root is asked too; the worst reason stays the answer when none has the file.
      if (sha || reason === 'too_large') return done(sha);
    }
    if (f.upper && f.dirs) {
      // Overlay shows a copied-up file with its image copy's inode number (and the upper file's ctime).
      const origins = f.upperNew ? [] : await this.lowerInodes(f.dirs, f.path);
      const opened = await openInRoot(this.host(f.dirs.upper), f.path, { ...opts, expect: { kind: 'upper', file: f.id, origins } });
      if (opened.ok || opened.failedAt !== 'root') places++;
      return done(await attempt(opened, 'runtime_storage'));
    }
    return done(undefined);
  }

  /** Inode numbers of the image's copies of path (every lower layer that has it as a regular file). */
  async lowerInodes(dirs: OverlayDirs, path: string): Promise<bigint[]> {
    const out: bigint[] = [];
    for (const l of dirs.lowers) {
      const opened = await openInRoot(this.host(l), path, { expect: { kind: 'any' } });
      if (!opened.ok) continue;
      out.push(opened.file.stat.ino);
      await opened.file.close();
    }
    return out;
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
