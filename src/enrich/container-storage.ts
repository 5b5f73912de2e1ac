// Where a container's files can still be reached after the process that ran
// one is gone: any live process of the container (every process of it shares
// its mount namespace, an exec session's too), found through the container's
// cgroup; and the upper directory its runtime's storage keeps until the
// container is removed. This module only finds directories and pids; what is
// read there is checked against the kernel's record (identity.ts).
import { readFile, readdir, readlink, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { OverlayDirs } from './overlay-facts.js';

export interface CgroupRef {
  /** Default-hierarchy cgroup id (the cgroup directory's inode on cgroup2). */
  cgroupId: bigint;
  cgroup: string;
  cgroupParent: string;
  mntNs: number;
}

export interface ContainerStorageOptions {
  procRoot?: string;
  /** The cgroup2 tree: /sys/fs/cgroup/unified on hybrid hosts, else /sys/fs/cgroup. */
  cgroupRoot?: string;
  /** How deep below the root a container's cgroup may sit (kubepods/<qos>/pod<uid>/<id> is 4). */
  maxDepth?: number;
}

/**
 * The host's cgroup2 tree. Through PID 1's root first: in a pod (host pid
 * namespace, private cgroup namespace) /sys/fs/cgroup shows only the pod's
 * own subtree, /proc/1/root/sys/fs/cgroup the node's.
 */
export function defaultCgroupRoot(): string {
  const candidates = ['/proc/1/root/sys/fs/cgroup/unified', '/proc/1/root/sys/fs/cgroup', '/sys/fs/cgroup/unified', '/sys/fs/cgroup'];
  return candidates.find((d) => existsSync(join(d, 'cgroup.procs'))) ?? '/sys/fs/cgroup';
}

const nsOf = async (procRoot: string, pid: number): Promise<number | undefined> => {
  const m = /\[(\d+)\]/.exec(await readlink(`${procRoot}/${pid}/ns/mnt`).catch(() => ''));
  return m ? Number(m[1]) : undefined;
};

export class ContainerStorage {
  private readonly procRoot: string;
  private readonly cgroupRoot: string;
  private readonly maxDepth: number;
  private dirs = new LRUCache<string, string>({ max: 4096 });
  /** A failed search is not repeated for the same cgroup for a while. */
  private searched = new LRUCache<string, true>({ max: 4096, ttl: 2_000 });

  constructor(opts: ContainerStorageOptions = {}) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.cgroupRoot = opts.cgroupRoot ?? defaultCgroupRoot();
    this.maxDepth = opts.maxDepth ?? 6;
  }

  /**
   * The cgroup directory the kernel recorded, found by its names and proved
   * by its id: on cgroup2 a cgroup's id is its directory's inode number, so
   * a directory recreated under the same name is not taken for it.
   */
  async cgroupDir(ref: CgroupRef): Promise<string | undefined> {
    if (!ref.cgroup || ref.cgroupId <= 1n) return undefined;
    const key = ref.cgroupId.toString();
    const hit = this.dirs.get(key);
    if (hit) return hit;
    if (this.searched.has(key)) return undefined;
    this.searched.set(key, true);
    let level = [this.cgroupRoot];
    for (let depth = 0; depth < this.maxDepth && level.length; depth++) {
      const next: string[] = [];
      for (const dir of level) {
        const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
        for (const e of entries) {
          if (!e.isDirectory()) continue;
          const child = join(dir, e.name);
          if (e.name === ref.cgroup && dir.endsWith(`/${ref.cgroupParent}`)) {
            const st = await stat(child, { bigint: true }).catch(() => null);
            if (st?.ino === ref.cgroupId) {
              this.dirs.set(key, child);
              return child;
            }
          }
          next.push(child);
        }
      }
      level = next;
    }
    return undefined;
  }

  /**
   * Live processes of the container that are in the mount namespace the
   * kernel recorded for the exec, so /proc/<pid>/root shows the very
   * filesystem the exec saw. The cgroup's members first, then the given
   * pids (the process and its ancestors).
   */
  async livePids(ref: CgroupRef, also: number[] = [], max = 4, examine = 64): Promise<number[]> {
    const out: number[] = [];
    const seen = new Set<number>();
    const consider = async (pid: number): Promise<void> => {
      if (pid <= 0 || seen.has(pid) || out.length >= max) return;
      seen.add(pid);
      if ((await nsOf(this.procRoot, pid)) === ref.mntNs) out.push(pid);
    };
    // The lineage's namespaces are read at once, not one after another: the
    // exec's own finding waits for this on a busy thread pool.
    const mine = await Promise.all(also.map((pid) => (pid > 0 ? nsOf(this.procRoot, pid) : undefined)));
    for (const [i, pid] of also.entries()) {
      if (pid <= 0 || seen.has(pid) || out.length >= max) continue;
      seen.add(pid);
      if (mine[i] === ref.mntNs) out.push(pid);
    }
    const dir = await this.cgroupDir(ref);
    if (dir && out.length < max) {
      const procs = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
      // A cgroup holding many processes that are not in the container's mount
      // namespace (not a container's) is not scanned to the end.
      for (const line of procs.split('\n').slice(0, examine)) {
        if (out.length >= max) break;
        const pid = Number(line);
        if (Number.isInteger(pid)) await consider(pid);
      }
    }
    return out;
  }
}

/** Overlay dirs from containers/storage (podman, CRI-O): <root>/overlay/<layer>/diff and its "lower" file. */
export async function containersStorageDirs(root: string, layer: string): Promise<OverlayDirs | undefined> {
  if (!/^[0-9a-f]{64}$/.test(layer)) return undefined;
  const base = join(root, 'overlay', layer);
  const upper = join(base, 'diff');
  if (!(await stat(upper).then((s) => s.isDirectory(), () => false))) return undefined;
  const lower = (await readFile(join(base, 'lower'), 'utf8').catch(() => '')).trim();
  const lowers = lower ? lower.split(':').filter(Boolean).map((l) => join(root, 'overlay', l)) : [];
  return { upper, lowers };
}

/** Overlay dirs from an overlay mount's options (a runtime's snapshot mounts, docker's GraphDriver). */
export function overlayDirsFromOptions(options: string[]): OverlayDirs | undefined {
  let upper: string | undefined;
  let lowers: string[] = [];
  for (const o of options) {
    if (o.startsWith('upperdir=')) upper = o.slice('upperdir='.length);
    else if (o.startsWith('lowerdir=')) lowers = o.slice('lowerdir='.length).split(':').filter(Boolean);
  }
  return upper ? { upper, lowers } : undefined;
}
