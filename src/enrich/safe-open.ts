// Reading a file on a container's behalf without being steered by it.
//
// A path inside a container is the container's to change: right after an
// exec it can be swapped for a symlink to a host file, a FIFO, a device or a
// huge sparse file. Every read the sensor makes for a container goes through
// here, and a fact (hash, content comparison) is only trusted when it comes
// from the file the kernel saw.
//
//   openInRoot(root, path, { expect })
//       Looks path up inside root (a container's root, /proc/<pid>/root, an
//       overlay upper or lower dir) with openat2: RESOLVE_IN_ROOT and
//       RESOLVE_NO_MAGICLINKS for the directories, so absolute symlinks and
//       `..` stay inside root; RESOLVE_NO_SYMLINKS and O_NOFOLLOW for the last
//       component; RESOLVE_NO_XDEV unless crossMounts. The file is opened
//       O_PATH first (opening a device or FIFO for reading can have effects
//       or block) and fstat'ed; only a regular file that is the expected one
//       and within maxBytes is then reopened for reading, O_NONBLOCK.
//   openProcessExe(procRoot, pid, { expect })
//       The same checks on /proc/<pid>/exe: while the process lives, the
//       kernel's own reference to what it executed (even unlinked, or a memfd).
//   sha256InRoot / sha256OfExe
//       The above, hashed, closed: { sha256 } or { reason }.
//
// expect says which file is acceptable:
//   { kind: 'same', file }   device, inode and ctime equal the kernel record's
//                            (through /proc/<pid>/exe or the overlay mount);
//   { kind: 'upper', file }  the file in an overlay's upper dir: the overlay
//                            inode of a file created in the container has the
//                            upper file's inode number and ctime, on the upper
//                            filesystem's device (implied: no mount crossing).
//                            A copied-up file keeps its lower file's inode
//                            number in the overlay: it matches only through
//                            origins, the inode numbers of the image's copies
//                            at the same path (read-only layers);
//   { kind: 'any' }          no record of the file (image layers, #! scripts
//                            by name): it stays inside root and is regular.
//
// Otherwise the answer is a reason: `gone` (nothing there, process or root
// gone), `replaced` (another file, or it changed while being read),
// `not_regular` (symlink, FIFO, device, directory), `too_large` (over
// maxBytes), `unavailable` (no openat2 on this kernel, or permission denied).
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { close as closeCb, fstat as fstatCb } from 'node:fs';
import { open as openFd, readlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { loadAddon, type Openat2Constants } from '../native/loader.js';

export type UnreadableReason = 'replaced' | 'not_regular' | 'too_large' | 'gone' | 'unavailable';
export const UNREADABLE_REASONS: readonly UnreadableReason[] = ['replaced', 'not_regular', 'too_large', 'gone', 'unavailable'];

/** The file as the kernel record has it. dev is the kernel's dev_t (major << 20 | minor). */
export interface KernelFileId {
  dev: number;
  inode: bigint;
  /** Absent when the record has no ctime: then device and inode decide. */
  ctimeSec?: bigint;
  ctimeNsec?: number;
}

export type Expect = { kind: 'same'; file: KernelFileId } | { kind: 'upper'; file: KernelFileId; origins?: bigint[] } | { kind: 'any' };

export interface SafeOpenOptions {
  expect: Expect;
  /** Larger files are refused with too_large. Default 256 MiB. */
  maxBytes?: number;
  /** Allow the lookup to cross mount points below root (a tmpfs inside a container's root). Default false. */
  crossMounts?: boolean;
}

export type Opened =
  | { ok: true; file: VerifiedFile }
  /** failedAt 'root': root itself could not be opened (its process is gone), nothing was looked up in it. */
  | { ok: false; reason: UnreadableReason; error?: string; failedAt?: 'root' };
export type HashResult = { sha256: string; reason?: undefined } | { sha256?: undefined; reason: UnreadableReason };

export const DEFAULT_MAX_BYTES = 256 << 20;
const CHUNK = 1 << 20;
// Read buffers: no more than there are slots to read into them (a storm of
// new binaries would otherwise hold one 1 MiB buffer per file at once, and
// leave them resident until V8's next full collection). A free buffer is
// held weakly, so an idle sensor's next full collection frees it.
const freeChunks: Array<WeakRef<Buffer>> = [];
const chunkWaiters: Array<(b: Buffer) => void> = [];
let chunksLent = 0;
async function takeChunk(): Promise<Buffer> {
  for (let r = freeChunks.pop(); r; r = freeChunks.pop()) {
    const b = r.deref();
    if (b) return (chunksLent++, b);
  }
  if (chunksLent < MAX_CONCURRENT_CALLS) return (chunksLent++, Buffer.allocUnsafeSlow(CHUNK));
  return new Promise((resolve) => chunkWaiters.push(resolve));
}
function returnChunk(b: Buffer): void {
  const next = chunkWaiters.shift();
  if (next) return next(b); // lent on
  chunksLent--;
  freeChunks.push(new WeakRef(b));
}
const closeFd = promisify(closeCb);
const fstat = (fd: number) =>
  new Promise<BigIntStats>((resolve, reject) => fstatCb(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))));

/**
 * Every file system call made here holds one of a few slots. A container
 * can make a lookup hang (a FUSE mount that never answers); that pins
 * thread-pool threads, and Node has four. With at most two held here, the
 * spool and the rest of the sensor keep theirs; lookups queue behind a hung
 * one and the caller's deadline gives up on them.
 */
export const MAX_CONCURRENT_CALLS = 2;
let busy = 0;
const waiting: Array<() => void> = [];
async function inSlot<T>(fn: () => Promise<T>): Promise<T> {
  if (busy >= MAX_CONCURRENT_CALLS) await new Promise<void>((r) => waiting.push(r));
  else busy++;
  try {
    return await fn();
  } finally {
    const next = waiting.shift();
    if (next) next(); // the slot passes on
    else busy--;
  }
}

let consts: Openat2Constants | undefined;
function c(): Openat2Constants {
  return (consts ??= loadAddon().openat2Constants);
}

/** The user-space st_dev (glibc's encoding) of a kernel dev_t. */
export function userDev(kernelDev: number): bigint {
  const major = BigInt(kernelDev >>> 20);
  const minor = BigInt(kernelDev & 0xfffff);
  return (minor & 0xffn) | ((major & 0xfffn) << 8n) | ((minor & ~0xffn) << 12n) | ((major & ~0xfffn) << 32n);
}

const ctimeNs = (f: KernelFileId): bigint | undefined =>
  f.ctimeSec === undefined || (f.ctimeSec === 0n && !f.ctimeNsec) ? undefined : f.ctimeSec * 1_000_000_000n + BigInt(f.ctimeNsec ?? 0);

/** Is st the file expect names? */
export function matches(st: BigIntStats, expect: Expect): boolean {
  if (expect.kind === 'any') return true;
  const f = expect.file;
  const origin = expect.kind === 'upper' && (expect.origins ?? []).includes(f.inode);
  if (st.ino !== f.inode && !origin) return false;
  const ct = ctimeNs(f);
  if (ct !== undefined && st.ctimeNs !== ct) return false;
  // 'upper': the device is the upper filesystem's, fixed by the lookup not crossing mounts.
  return expect.kind === 'upper' || st.dev === userDev(f.dev);
}

function reasonOf(err: unknown, lastComponent: boolean): UnreadableReason {
  switch ((err as { code?: string }).code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'ESRCH':
      return 'gone';
    case 'ELOOP': // a symlink where the file was (O_NOFOLLOW), or a loop on the way
      return lastComponent ? 'not_regular' : 'replaced';
    case 'EXDEV': // the lookup would leave root or cross a mount: not the file
      return 'replaced';
    default: // EACCES, EPERM, ENOSYS (kernel before 5.6), ...
      return 'unavailable';
  }
}

async function openat2(dirfd: number, path: string, flags: number, resolve: number): Promise<number> {
  const addon = loadAddon();
  try {
    return await inSlot(() => addon.openat2(dirfd, path, flags, resolve));
  } catch (err) {
    // A rename or mount raced the lookup (RESOLVE_IN_ROOT/BENEATH): once more.
    if ((err as { code?: string }).code !== 'EAGAIN') throw err;
    return inSlot(() => addon.openat2(dirfd, path, flags, resolve));
  }
}

/** A file that passed the checks: an O_PATH descriptor and its fstat. */
export class VerifiedFile {
  private closed = false;
  constructor(
    private readonly fd: number,
    readonly stat: BigIntStats,
    private readonly expect: Expect,
    private readonly maxBytes: number,
  ) {}

  /**
   * Hashes the content. Reopened through /proc/self/fd, which names exactly
   * this inode; if it changes while being read (ctime or size), it is not
   * the file that was checked: replaced.
   */
  async sha256(): Promise<HashResult> {
    const { O_RDONLY, O_NONBLOCK, O_NOCTTY, O_CLOEXEC } = c();
    let fh;
    try {
      fh = await inSlot(() => openFd(`/proc/self/fd/${this.fd}`, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    } catch (err) {
      return { reason: reasonOf(err, true) };
    }
    try {
      const h = createHash('sha256');
      const buf = await takeChunk();
      let total = 0;
      try {
        for (;;) {
          const { bytesRead } = await inSlot(() => fh!.read(buf, 0, CHUNK, null));
          if (bytesRead === 0) break;
          total += bytesRead;
          if (total > this.maxBytes) return { reason: 'too_large' };
          h.update(buf.subarray(0, bytesRead));
        }
      } finally {
        returnChunk(buf);
      }
      const after = await inSlot(() => fh!.stat({ bigint: true }));
      if (after.ctimeNs !== this.stat.ctimeNs || after.size !== this.stat.size || BigInt(total) !== after.size || !matches(after, this.expect)) {
        return { reason: 'replaced' };
      }
      return { sha256: h.digest('hex') };
    } catch (err) {
      return { reason: reasonOf(err, true) };
    } finally {
      await inSlot(() => fh!.close()).catch(() => undefined);
    }
  }

  /** Where the kernel says this file is, from the reader's root (readlink of the descriptor). */
  async whereIs(): Promise<string | undefined> {
    return inSlot(() => readlink(`/proc/self/fd/${this.fd}`)).catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await closeFd(this.fd).catch(() => undefined);
  }
}

async function verify(fd: number, opts: SafeOpenOptions): Promise<Opened> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  let st: BigIntStats;
  try {
    st = await inSlot(() => fstat(fd));
  } catch (err) {
    await closeFd(fd).catch(() => undefined);
    return { ok: false, reason: reasonOf(err, true), error: String(err) };
  }
  const reason: UnreadableReason | undefined = !st.isFile()
    ? 'not_regular'
    : !matches(st, opts.expect)
      ? 'replaced'
      : st.size > BigInt(maxBytes)
        ? 'too_large'
        : undefined;
  if (reason) {
    await closeFd(fd).catch(() => undefined);
    return { ok: false, reason };
  }
  return { ok: true, file: new VerifiedFile(fd, st, opts.expect, maxBytes) };
}

/** Splits a container path into its directory and last component; undefined when it names no file. */
function splitPath(path: string): { dir: string; base: string } | undefined {
  const parts = path.split('/').filter((p) => p && p !== '.');
  const base = parts.pop();
  if (!base || base === '..') return undefined;
  return { dir: parts.length ? parts.join('/') : '.', base };
}

/** Opens path (as the container sees it) inside root; see the header. */
export async function openInRoot(root: string, path: string, opts: SafeOpenOptions): Promise<Opened> {
  const k = c();
  const split = splitPath(path);
  if (!split) return { ok: false, reason: 'not_regular', error: `not a file path: ${JSON.stringify(path)}` };
  // An upper dir's file is only recognisable on the upper filesystem itself.
  const xdev = opts.crossMounts && opts.expect.kind !== 'upper' ? 0 : k.RESOLVE_NO_XDEV;
  const fds: number[] = [];
  let lastComponent = false;
  let rootFd: number;
  try {
    // root is ours to name (/proc/<pid>/root is a magic link we mean to follow).
    rootFd = await openat2(k.AT_FDCWD, root, k.O_PATH | k.O_DIRECTORY | k.O_CLOEXEC, 0);
  } catch (err) {
    return { ok: false, reason: reasonOf(err, false), error: String(err), failedAt: 'root' };
  }
  fds.push(rootFd);
  try {
    const dirFd = await openat2(rootFd, split.dir, k.O_PATH | k.O_DIRECTORY | k.O_CLOEXEC, k.RESOLVE_IN_ROOT | k.RESOLVE_NO_MAGICLINKS | xdev);
    fds.push(dirFd);
    lastComponent = true;
    const fd = await openat2(dirFd, split.base, k.O_PATH | k.O_NOFOLLOW | k.O_CLOEXEC, k.RESOLVE_BENEATH | k.RESOLVE_NO_SYMLINKS | xdev);
    return await verify(fd, opts);
  } catch (err) {
    return { ok: false, reason: reasonOf(err, lastComponent), error: String(err) };
  } finally {
    for (const fd of fds) await closeFd(fd).catch(() => undefined);
  }
}

/**
 * Like openInRoot, but symlinks on the way, the last one included, are
 * followed inside root (RESOLVE_IN_ROOT: an absolute link or `..` cannot
 * leave it; no /proc magic links). For names a process gave, not the
 * kernel: an interpreter's script operand may be an image symlink.
 */
export async function openInRootFollowing(root: string, path: string, opts: SafeOpenOptions): Promise<Opened> {
  const k = c();
  if (!path || path.includes('\0')) return { ok: false, reason: 'not_regular', error: `not a file path: ${JSON.stringify(path)}` };
  const xdev = opts.crossMounts ? 0 : k.RESOLVE_NO_XDEV;
  let rootFd: number;
  try {
    rootFd = await openat2(k.AT_FDCWD, root, k.O_PATH | k.O_DIRECTORY | k.O_CLOEXEC, 0);
  } catch (err) {
    return { ok: false, reason: reasonOf(err, false), error: String(err), failedAt: 'root' };
  }
  try {
    const fd = await openat2(rootFd, path, k.O_PATH | k.O_CLOEXEC, k.RESOLVE_IN_ROOT | k.RESOLVE_NO_MAGICLINKS | xdev);
    return await verify(fd, opts);
  } catch (err) {
    return { ok: false, reason: reasonOf(err, false), error: String(err) };
  } finally {
    await closeFd(rootFd).catch(() => undefined);
  }
}

/** Opens a process's open file /proc/<pid>/fd/<n> (a magic link named on purpose: a memfd script). */
export async function openProcessFd(procRoot: string, pid: number, n: number, opts: SafeOpenOptions): Promise<Opened> {
  const k = c();
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(n) || n < 0) return { ok: false, reason: 'gone' };
  try {
    const fd = await openat2(k.AT_FDCWD, `${procRoot}/${pid}/fd/${n}`, k.O_PATH | k.O_CLOEXEC, 0);
    return await verify(fd, opts);
  } catch (err) {
    return { ok: false, reason: reasonOf(err, true), error: String(err) };
  }
}

/** Opens what /proc/<pid>/exe names: the kernel's own reference to the executed file. */
export async function openProcessExe(procRoot: string, pid: number, opts: SafeOpenOptions): Promise<Opened> {
  const k = c();
  if (!Number.isInteger(pid) || pid <= 0) return { ok: false, reason: 'gone' };
  try {
    const fd = await openat2(k.AT_FDCWD, `${procRoot}/${pid}/exe`, k.O_PATH | k.O_CLOEXEC, 0);
    return await verify(fd, opts);
  } catch (err) {
    return { ok: false, reason: reasonOf(err, true), error: String(err) };
  }
}

async function hashOpened(opened: Opened): Promise<HashResult> {
  if (!opened.ok) return { reason: opened.reason };
  try {
    return await opened.file.sha256();
  } finally {
    await opened.file.close();
  }
}

export async function sha256InRoot(root: string, path: string, opts: SafeOpenOptions): Promise<HashResult> {
  return hashOpened(await openInRoot(root, path, opts));
}

export async function sha256OfExe(procRoot: string, pid: number, opts: SafeOpenOptions): Promise<HashResult> {
  return hashOpened(await openProcessExe(procRoot, pid, opts));
}
