// The script file an image interpreter was asked to run (sh /tmp/x.sh):
// found, classified by layer and hashed on the container's behalf.
//
// The kernel never saw this file (the interpreter opens it after exec), so
// there is no kernel identity to check it against. What holds instead: the
// name is looked up inside the process's own root (never the host's),
// symlinks on the way are followed only inside that root, and every fact
// (layer, hash, same as the image) is about the one inode that lookup
// opened: the layer from that inode's device and the upper dir's copy with
// the same identity, the hash through the same descriptor, re-checked.
//
// Races, and what was chosen: the operand is resolved against the process's
// cwd as /proc/<pid>/cwd shows it when the record is handled, a few ms after
// exec. A script that changes its cwd first, or replaces itself, can be
// looked up as something else; a replacement shows up in the upper layer
// (a symlink or a new file is drift itself), and with prevention the task
// waits stopped before its first instruction, so the lookup sees the
// exec-time state. A process already gone leaves an absolute operand to the
// container's other processes' roots and a relative one unresolved (counted).
import { readFile, readlink, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import type { Layer } from '../pipeline/classify.js';
import type { FactsSource, FileFactReason } from '../sdk/signature.js';
import type { OverlayDirs, OverlayFacts } from './overlay-facts.js';
import { openInRoot, openInRootFollowing, openProcessFd, type Opened, type UnreadableReason } from './safe-open.js';

export interface ScriptFileFacts {
  /** The script's path inside the container (after symlinks), else the operand as given. */
  path: string;
  /** The operand as the interpreter got it. */
  operand: string;
  /** Absent when it could not be told; layerUnavailable says why. */
  layer?: Layer;
  layerUnavailable?: FileFactReason;
  /** On a plain mount (layer OTHER): whether that mount is writable (a volume) or read-only. */
  volume?: 'writable' | 'read_only';
  sha256?: string;
  sha256Unavailable?: FileFactReason;
  sameAsImage?: boolean;
  sameAsImageUnavailable?: FileFactReason;
  inode?: string;
  device?: string;
  ctime?: string;
  source?: FactsSource;
}

export interface ScriptLookup {
  procRoot: string;
  /** Where host paths (overlay dirs) are visible to the sensor; '' in the host mount namespace. */
  hostRoot?: string;
  /** The interpreter process (host pid). */
  pid: number;
  /** Other live processes of the container, for an absolute operand once pid is gone. */
  otherPids: number[];
  mntNs: number;
  operand: string;
  overlay: OverlayFacts;
  dirs: () => Promise<OverlayDirs | null>;
  maxBytes?: number;
}

const FD_PATH = /^\/(?:proc\/self|dev)\/fd\/(\d+)$/;

/** The user-space st_dev as "major:minor" (glibc's encoding). */
export function devString(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

interface MountLine {
  dev: string;
  mountPoint: string;
  readOnly: boolean;
  fstype: string;
}

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

export function parseMountinfo(text: string): MountLine[] {
  const out: MountLine[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const f = left.split(' ');
    const [fstype] = right.split(' ');
    if (f.length < 6 || !fstype) continue;
    out.push({ dev: f[2]!, mountPoint: unescape(f[4]!), readOnly: f[5]!.split(',').includes('ro'), fstype });
  }
  return out;
}

/** The path below root, from a readlink made outside it; undefined when it is not below root. */
export function belowRoot(link: string, rootLink: string): string | undefined {
  if (rootLink === '/') return link.startsWith('/') ? link : undefined;
  if (link === rootLink) return '/';
  return link.startsWith(`${rootLink}/`) ? link.slice(rootLink.length) : undefined;
}

async function inMountNs(procRoot: string, pid: number, mntNs: number): Promise<boolean> {
  return (await readlink(`${procRoot}/${pid}/ns/mnt`).catch(() => '')) === `mnt:[${mntNs}]`;
}

const REASON_RANK: Record<UnreadableReason, number> = { too_large: 4, replaced: 3, not_regular: 2, unavailable: 1, gone: 0 };

/** Finds, classifies and hashes the script; never throws for what the container did. */
export async function scriptFileFacts(q: ScriptLookup): Promise<ScriptFileFacts> {
  const host = (p: string) => (q.hostRoot ? posix.join(q.hostRoot, p) : p);
  const opts = { expect: { kind: 'any' as const }, crossMounts: true, ...(q.maxBytes ? { maxBytes: q.maxBytes } : {}) };
  const facts: ScriptFileFacts = { path: q.operand, operand: q.operand };
  let opened: Opened | undefined;
  let rootPid: number | undefined;
  let rootLink = '/';
  let source: FactsSource = 'process';
  const fd = FD_PATH.exec(q.operand);
  if (fd) {
    // An inherited descriptor (a memfd, or a file already deleted): the interpreter's own.
    if (await inMountNs(q.procRoot, q.pid, q.mntNs)) {
      opened = await openProcessFd(q.procRoot, q.pid, Number(fd[1]), opts);
      rootPid = q.pid;
    }
  } else {
    let worst: UnreadableReason | undefined;
    const candidates = q.operand.startsWith('/') ? [q.pid, ...q.otherPids] : [q.pid];
    for (const pid of new Set(candidates)) {
      if (pid <= 0 || !(await inMountNs(q.procRoot, pid, q.mntNs))) continue;
      const root = `${q.procRoot}/${pid}/root`;
      rootLink = await readlink(root).catch(() => '/');
      let path = q.operand;
      if (!path.startsWith('/')) {
        const cwd = belowRoot(await readlink(`${q.procRoot}/${pid}/cwd`).catch(() => ''), rootLink);
        if (!cwd) continue;
        path = posix.join(cwd, path);
      }
      facts.path = path;
      const o = await openInRootFollowing(root, path, opts);
      if (o.ok) {
        opened = o;
        rootPid = pid;
        source = pid === q.pid ? 'process' : 'container_process';
        break;
      }
      if (o.failedAt === 'root') continue;
      if (!worst || REASON_RANK[o.reason] > REASON_RANK[worst]) worst = o.reason;
      opened = o;
      rootPid = pid;
    }
  }
  if (!opened || rootPid === undefined) {
    facts.layerUnavailable = facts.sha256Unavailable = 'container_gone';
    return facts;
  }
  if (!opened.ok) {
    facts.layerUnavailable = facts.sha256Unavailable = opened.reason;
    return facts;
  }
  const file = opened.file;
  try {
    const st = file.stat;
    facts.inode = st.ino.toString();
    facts.device = devString(st.dev);
    facts.ctime = new Date(Number(st.ctimeNs / 1_000_000n)).toISOString();
    facts.source = source;
    const where = await file.whereIs();
    if (fd && where?.startsWith('memfd:')) {
      facts.layer = 'MEMFD';
      facts.path = where;
    } else {
      const real = where ? belowRoot(where.replace(/ \(deleted\)$/, ''), rootLink) : undefined;
      if (real) facts.path = real;
      await classify(q, rootPid, st, real, facts, host);
    }
    const h = await file.sha256();
    if (h.reason === undefined) facts.sha256 = h.sha256;
    else facts.sha256Unavailable = h.reason;
    if (facts.sha256 && facts.layer === 'UPPER_COPIED_UP' && inContainerPath(facts)) {
      const dirs = await q.dirs();
      const image = dirs ? await q.overlay.imageHash(dirs, facts.path) : { reason: 'gone' as const };
      if (image.reason === undefined) facts.sameAsImage = image.sha256 === facts.sha256;
      else facts.sameAsImageUnavailable = image.reason;
    }
  } finally {
    await file.close();
  }
  return facts;
}

const inContainerPath = (f: ScriptFileFacts) => f.path.startsWith('/');

/** The layer of the opened inode: by its device, then by the upper dir's copy with the same identity. */
async function classify(
  q: ScriptLookup,
  pid: number,
  st: { dev: bigint; ino: bigint; ctimeNs: bigint },
  path: string | undefined,
  facts: ScriptFileFacts,
  host: (p: string) => string,
): Promise<void> {
  const rootDev = await stat(`${q.procRoot}/${pid}/root`, { bigint: true }).then((s) => s.dev, () => undefined);
  const mounts = parseMountinfo(await readFile(`${q.procRoot}/${pid}/mountinfo`, 'utf8').catch(() => ''));
  if (rootDev === undefined || !mounts.length) {
    facts.layerUnavailable = 'gone';
    return;
  }
  if (st.dev !== rootDev) {
    // Another mount inside the container: the one with this device whose mount point holds the path.
    const dev = devString(st.dev);
    const m = mounts
      .filter((x) => x.dev === dev && (!path || path === x.mountPoint || path.startsWith(x.mountPoint.endsWith('/') ? x.mountPoint : `${x.mountPoint}/`)))
      .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
    if (!m) facts.layerUnavailable = 'replaced';
    else if (m.fstype === 'tmpfs') facts.layer = 'TMPFS';
    else if (m.fstype === 'overlay') facts.layer = 'UNKNOWN'; // an overlay mounted inside the container
    else {
      facts.layer = 'OTHER';
      facts.volume = m.readOnly ? 'read_only' : 'writable';
    }
    return;
  }
  const dirs = await q.dirs();
  if (!dirs || !path) {
    facts.layerUnavailable = dirs ? 'replaced' : 'unavailable';
    return;
  }
  // Overlay shows a copied-up file with its image copy's inode number; a new file has the upper file's.
  const origins = await q.overlay.lowerInodes(dirs, path);
  const id = { dev: 0, inode: st.ino, ctimeSec: st.ctimeNs / 1_000_000_000n, ctimeNsec: Number(st.ctimeNs % 1_000_000_000n) };
  const upper = await openInRoot(host(dirs.upper), path, { expect: { kind: 'upper', file: id, origins } });
  if (upper.ok) {
    await upper.file.close();
    facts.layer = origins.length ? 'UPPER_COPIED_UP' : 'UPPER_NEW';
  } else if (upper.reason === 'gone' && origins.length) {
    facts.layer = 'LOWER';
  } else {
    facts.layerUnavailable = upper.reason === 'gone' ? 'replaced' : upper.reason;
  }
}
