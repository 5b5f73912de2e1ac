// Facts about files in a container's overlay that the kernel record cannot
// carry: which layer a #! script is in (the exec record's file is its
// interpreter), content hashes, and whether a copied-up file still has the
// image's content. Read from the container's root overlay mount options
// (upperdir, lowerdir), cached per mount namespace.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize } from 'node:path';
import { LRUCache } from 'lru-cache';

export interface OverlayDirs {
  upper: string;
  lowers: string[];
}

const MAX_HASH_BYTES = 256 << 20;

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

const exists = (p: string) => stat(p).then((s) => s.isFile(), () => false);

export async function sha256File(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path);
    if (!st.isFile() || st.size > MAX_HASH_BYTES) return undefined;
    const h = createHash('sha256');
    for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
    return h.digest('hex');
  } catch {
    return undefined;
  }
}

export interface OverlayFactsOptions {
  procRoot?: string;
  /** Where host paths (upperdir, lowerdir) are visible to the sensor; '' when it runs in the host mount namespace. */
  hostRoot?: string;
}

export class OverlayFacts {
  private dirs = new LRUCache<number, OverlayDirs>({ max: 2048, ttl: 10 * 60_000 });
  private hashes = new LRUCache<string, string>({ max: 4096 });
  /** Recent misses, so a respawning payload does not cost a failed open each time. */
  private misses = new LRUCache<string, true>({ max: 4096, ttl: 5_000 });
  private readonly procRoot: string;
  private readonly hostRoot: string;

  constructor(opts: OverlayFactsOptions = {}) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.hostRoot = opts.hostRoot ?? '';
  }

  /**
   * The container's overlay dirs, read through the first of the given
   * processes that is still alive and has the overlay as its root (the
   * process itself, else its ancestors up to the container's init).
   * Only answers are cached: a miss may succeed with the next event.
   */
  async overlayOf(mntNs: number, hostPids: number[]): Promise<OverlayDirs | null> {
    for (const pid of hostPids) {
      if (pid <= 0 || this.misses.has(`pid:${pid}`)) continue;
      try {
        const d = rootOverlayFromMountinfo(await readFile(`${this.procRoot}/${pid}/mountinfo`, 'utf8'));
        if (d) {
          this.dirs.set(mntNs, d);
          return d;
        }
      } catch {
        this.misses.set(`pid:${pid}`, true); // gone: try the next one
      }
    }
    // Nobody left to ask: fall back to what an earlier event saw. Namespace
    // inode numbers are reused, so only trust it while its upper dir exists.
    const cached = this.dirs.get(mntNs);
    if (cached && (await stat(this.host(cached.upper)).then(() => true, () => false))) return cached;
    return null;
  }

  private host(p: string): string {
    return this.hostRoot ? join(this.hostRoot, p) : p;
  }

  /** Layer of a path inside the container; undefined when it cannot be told. */
  async layerOf(dirs: OverlayDirs, path: string): Promise<'LOWER' | 'UPPER_NEW' | 'UPPER_COPIED_UP' | undefined> {
    if (!isAbsolute(path)) return undefined;
    const rel = normalize(path);
    if (await exists(this.host(join(dirs.upper, rel)))) {
      for (const l of dirs.lowers) if (await exists(this.host(join(l, rel)))) return 'UPPER_COPIED_UP';
      return 'UPPER_NEW';
    }
    for (const l of dirs.lowers) if (await exists(this.host(join(l, rel)))) return 'LOWER';
    return undefined;
  }

  async hash(key: string, path: string): Promise<string | undefined> {
    const hit = this.hashes.get(key);
    if (hit) return hit;
    const missKey = `${key}\0${path}`;
    if (this.misses.has(missKey)) return undefined;
    const h = await sha256File(path);
    if (h) this.hashes.set(key, h);
    else this.misses.set(missKey, true);
    return h;
  }

  /** Inode numbers of the image's copies of path (every lower layer that has it). */
  async lowerInodes(dirs: OverlayDirs, path: string): Promise<bigint[]> {
    const out: bigint[] = [];
    for (const l of dirs.lowers) {
      const st = await stat(this.host(join(l, normalize(path))), { bigint: true }).catch(() => null);
      if (st?.isFile()) out.push(st.ino);
    }
    return out;
  }

  /** Content hash of the image's copy of path (first lower layer that has it). */
  async imageHash(dirs: OverlayDirs, path: string): Promise<string | undefined> {
    for (const l of dirs.lowers) {
      const p = this.host(join(l, normalize(path)));
      if (await exists(p)) return this.hash(`lower:${p}`, p);
    }
    return undefined;
  }
}
