// Container metadata from podman's own state: containers/storage's
// containers.json and images.json (name, image name, image id, digest),
// re-read only when they change. Labels are not in those files; they come
// from `podman container inspect`, run lazily with a deadline.
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { containersStorageDirs } from './container-storage.js';
import type { ContainerMetadata } from './metadata.js';

interface StoredContainer {
  id: string;
  layer?: string;
  names?: string[];
  image?: string;
  metadata?: string;
}
interface StoredImage {
  id: string;
  digest?: string;
  names?: string[];
}

export const DEFAULT_PODMAN_STORAGE = '/var/lib/containers/storage';

export class PodmanStore {
  readonly name = 'podman';
  private containers = new Map<string, StoredContainer>();
  private images = new Map<string, StoredImage>();
  private stamp = '';

  constructor(
    private readonly root = DEFAULT_PODMAN_STORAGE,
    private readonly inspectTimeoutMs = 2_000,
  ) {}

  /**
   * Podman is on this node when its storage root exists or its binary is on
   * PATH. Not when containers.json exists: on a fresh node that file appears
   * with the first container, which may be long after the sensor started.
   */
  async available(): Promise<boolean> {
    if (await stat(this.root).then(() => true, () => false)) return true;
    const dirs = (process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin').split(':').filter(Boolean);
    for (const d of dirs) if (await stat(join(d, 'podman')).then(() => true, () => false)) return true;
    return false;
  }

  private async refresh(): Promise<void> {
    const cPath = join(this.root, 'overlay-containers', 'containers.json');
    const iPath = join(this.root, 'overlay-images', 'images.json');
    const [cs, is] = await Promise.all([stat(cPath).catch(() => null), stat(iPath).catch(() => null)]);
    const stamp = `${cs?.mtimeMs}:${cs?.size}:${is?.mtimeMs}:${is?.size}`;
    if (stamp === this.stamp) return;
    const [containers, images] = await Promise.all([readJson<StoredContainer[]>(cPath), readJson<StoredImage[]>(iPath)]);
    this.containers = new Map((containers ?? []).map((c) => [c.id, c]));
    this.images = new Map((images ?? []).map((i) => [i.id, i]));
    this.stamp = stamp;
  }

  async lookup(id: string): Promise<ContainerMetadata | null> {
    await this.refresh();
    const c = this.containers.get(id);
    if (!c) return null;
    const meta = parseMetadata(c.metadata);
    const image = c.image ? this.images.get(c.image) : undefined;
    const result: ContainerMetadata = {
      id,
      runtime: 'podman',
      name: meta['name'] ?? c.names?.[0],
      image: meta['image-name'] ?? image?.names?.[0],
      imageId: image?.digest ?? (c.image ? `sha256:${c.image}` : undefined),
    };
    const rootfs = c.layer ? await containersStorageDirs(this.root, c.layer) : undefined;
    if (rootfs) result.rootfs = rootfs;
    // Labels need a podman call: fill them in when it answers, without
    // holding this lookup (the resolver caches this very object).
    void this.fillLabels(id, result);
    return result;
  }

  /** `podman inspect` can time out on a busy node: try again a few times, or the labels stay unknown for the cache's TTL. */
  private async fillLabels(id: string, result: ContainerMetadata, attempts = 3): Promise<void> {
    for (let i = 0; i < attempts; i++) {
      const labels = await this.labels(id);
      if (labels) {
        if (Object.keys(labels).length) result.labels = labels;
        return;
      }
      await new Promise((r) => setTimeout(r, 1_000 * (i + 1)).unref());
    }
  }

  /** Is the container still known to podman? (for evicting the dead) */
  async exists(id: string): Promise<boolean> {
    await this.refresh();
    return this.containers.has(id);
  }

  /** Podman keeps labels in its database; ask podman itself, bounded in time. */
  private labels(id: string): Promise<Record<string, string> | undefined> {
    return new Promise((resolve) => {
      execFile(
        'podman',
        ['container', 'inspect', '--format', '{{json .Config.Labels}}', id],
        { timeout: this.inspectTimeoutMs },
        (err, stdout) => {
          if (err) return resolve(undefined);
          try {
            const parsed = JSON.parse(stdout) as Record<string, string> | null;
            resolve(parsed ?? {});
          } catch {
            resolve(undefined);
          }
        },
      );
    });
  }
}

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return null;
  }
}

function parseMetadata(raw: string | undefined): Record<string, string> {
  if (!raw) return {};
  try {
    return JSON.parse(raw) as Record<string, string>;
  } catch {
    return {};
  }
}
