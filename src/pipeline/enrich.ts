// Enrichment: host or container, what the node knows about the container,
// and facts about the file (content hash, same as the image, the layer of a
// #! script). Lookups never hold the stream for long: metadata answers from
// cache or gives up after its wait and the event goes on (counted).
import { readlink } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import { join } from 'node:path';
import { ContainerStorage } from '../enrich/container-storage.js';
import type { ContainerMetadata, MetadataResolver } from '../enrich/metadata.js';
import { OverlayFacts, type OverlayDirs } from '../enrich/overlay-facts.js';
import { hashIfSame, type Refusal } from '../enrich/verified-file.js';
import type { DetectionEvent, ExecDetection, FileFacts } from '../signatures/sdk.js';
import { isUnlinked } from './classify.js';
import { containerOf, type HostNamespaces } from './container.js';
import type { DecodedEvent, ExecEvent } from './decode.js';
import type { Metrics } from './metrics.js';
import { FileFlag } from './records.js';

export interface Enricher {
  /** Synchronous when there is nothing to look up (the common case), else a promise. */
  enrich(rec: DecodedEvent): DetectionEvent | Promise<DetectionEvent>;
}

export interface EnricherOptions {
  host: HostNamespaces;
  metrics: Metrics;
  resolver?: MetadataResolver;
  procRoot?: string;
  overlay?: OverlayFacts;
  storage?: ContainerStorage;
}

/** How long file facts wait for the runtime's storage of a container whose processes are all gone. */
const STORAGE_WAIT_MS = 2_000;

/** Parent pid → executable, briefly: one shell spawning many payloads is read once. */
const parents = new LRUCache<number, { exe: string | undefined }>({ max: 4096, ttl: 2_000 });

/** The parent's executable, if it is still alive (it usually is: it just forked us). */
async function parentExecutable(hostPpid: number, procRoot: string): Promise<string | undefined> {
  if (hostPpid <= 0) return undefined;
  const hit = parents.get(hostPpid);
  if (hit) return hit.exe;
  const exe = await readlink(`${procRoot}/${hostPpid}/exe`).catch(() => undefined);
  parents.set(hostPpid, { exe });
  return exe;
}

export function createEnricher(opts: EnricherOptions): Enricher {
  const procRoot = opts.procRoot ?? '/proc';
  const overlay = opts.overlay ?? new OverlayFacts({ procRoot });
  const storage = opts.storage ?? new ContainerStorage({ procRoot });
  const { metrics, resolver } = opts;
  /** Content hashes by the kernel's identity of the file (dev, inode, ctime). */
  const hashes = new LRUCache<string, { sha256: string; source: NonNullable<FileFacts['source']> }>({ max: 4096 });

  /** The process, then its ancestors up to the container's init: whoever is still alive. */
  const lineage = (rec: DecodedEvent): number[] =>
    rec.kind === 'exec' ? [rec.hostPid, ...rec.ancestors.map((a) => a.hostPid), rec.sessionHostPid] : [rec.hostPid];

  /** Live processes of the container in the mount namespace the exec saw: an exec session's too. */
  const livePids = (rec: DecodedEvent): Promise<number[]> => storage.livePids(rec, lineage(rec));

  /** The overlay dirs: from a live process's mounts, else from the runtime's storage. */
  async function overlayDirs(rec: DecodedEvent, pids: number[], meta: Promise<ContainerMetadata | undefined>): Promise<OverlayDirs | null> {
    return (await overlay.overlayOf(rec.mntNs, pids)) ?? (await meta)?.rootfs ?? null;
  }

  async function fileFacts(rec: DecodedEvent, meta: Promise<ContainerMetadata | undefined>, slowMeta: () => Promise<ContainerMetadata | undefined>): Promise<FileFacts> {
    const facts: FileFacts = {};
    const key = `${rec.dev}:${rec.inode}:${rec.ctimeSec}:${rec.ctimeNsec}`;
    const want = { device: rec.device, inode: rec.inode, ctimeSec: rec.ctimeSec, ctimeNsec: rec.ctimeNsec };
    const refusals: Refusal[] = [];
    let places = 0; // live container processes and upper dirs looked into
    const attempt = async (path: string, source: NonNullable<FileFacts['source']>, sameDevice: boolean, followLink = false, origins: bigint[] = []): Promise<boolean> => {
      const r = await hashIfSame(path, want, { sameDevice, followLink, origins });
      if ('sha256' in r) {
        hashes.set(key, { sha256: r.sha256, source });
        return true;
      }
      // The pid may be gone or reused: only the container's places explain a miss.
      if (source !== 'process') {
        places++;
        refusals.push(r.refused);
      }
      return false;
    };
    const upper = rec.layer.startsWith('UPPER');
    const reachable = !rec.pathTruncated && rec.path.startsWith('/');
    let pids: number[] = [];
    if (!hashes.has(key)) {
      // The exec'd file itself, even unlinked or a memfd, while its process lives.
      let found = rec.kind === 'exec' && (await attempt(`${procRoot}/${rec.hostPid}/exe`, 'process', true, true));
      // Any live process of the container sees the same files (exec sessions, a process that exited).
      if (!found && reachable) {
        pids = await livePids(rec);
        for (const pid of pids) if ((found = await attempt(`${procRoot}/${pid}/root${rec.path}`, 'container_process', true))) break;
      }
      // Nobody left: the upper dir the runtime keeps until the container is removed.
      if (!found && reachable && upper) {
        // The upper dir outlives the container's processes: worth a longer wait for the runtime's answer.
        const dirs = await overlayDirs(rec, pids, slowMeta());
        // A copied-up file keeps its image copy's inode number in the overlay (the
        // kernel recorded that one): the upper file matches through its origin.
        const origins = dirs && rec.layer === 'UPPER_COPIED_UP' ? await overlay.lowerInodes(dirs, rec.path) : [];
        if (dirs) await attempt(join(dirs.upper, rec.path), 'runtime_storage', false, false, origins);
      }
    }
    const hit = hashes.get(key);
    if (hit) {
      facts.sha256 = hit.sha256;
      facts.source = hit.source;
    } else {
      metrics.inc('file_hash_unavailable_total');
      facts.unavailable = rec.pathTruncated
        ? 'path_truncated'
        : isUnlinked(rec.fileFlags)
          ? 'process_exited'
          : (['changed', 'too_large', 'unreadable'] as const).find((r) => refusals.includes(r)) ?? (places > 0 ? 'gone' : 'container_gone');
      metrics.inc('file_facts_unavailable_total', { reason: facts.unavailable });
    }
    if (facts.sha256 && rec.layer === 'UPPER_COPIED_UP') {
      if (!pids.length && reachable) pids = await livePids(rec);
      const dirs = await overlayDirs(rec, pids, meta);
      const image = dirs ? await overlay.imageHash(dirs, rec.path) : undefined;
      if (image) facts.sameAsImage = image === facts.sha256;
    }
    return facts;
  }

  async function scriptFacts(exec: ExecEvent, ev: ExecDetection, meta: Promise<ContainerMetadata | undefined>): Promise<void> {
    const path = exec.filename;
    ev.script = { path };
    const seen = exec.scriptLayer; // the kernel saw the script itself: no lookup, no race
    if (seen) {
      ev.script.layer = seen;
      ev.script.source = 'kernel';
      return;
    }
    const pids = await livePids(exec);
    const dirs = await overlayDirs(exec, [...pids, ...lineage(exec)], meta);
    const layer = dirs ? await overlay.layerOf(dirs, path) : undefined;
    if (layer) {
      ev.script.layer = layer;
      ev.script.source = 'overlay';
    } else metrics.inc('script_layer_unknown_total');
  }

  return {
    enrich(rec) {
      const container = containerOf(rec, opts.host);
      const ev: DetectionEvent = rec.kind === 'exec' ? { kind: 'exec', exec: rec, container } : { kind: 'mmap_exec', mmap: rec, container };
      // Host events are dropped right after this: spend nothing on them.
      if (!container.inContainer) return ev;

      const work: Array<Promise<unknown>> = [];
      // Anything looked up asynchronously outlives the batch buffer: own the bytes first.
      const needsWork = rec.layer !== 'LOWER' || isUnlinked(rec.fileFlags) || (rec.fileFlags & FileFlag.SCRIPT) !== 0 || (!!resolver && !!container.id);
      if (needsWork) rec.detach();
      const meta: Promise<ContainerMetadata | undefined> = resolver && container.id ? resolver.resolve(container.id, container.runtime) : Promise.resolve(undefined);
      // Only where the file is reachable nowhere else (the container's processes are all gone).
      let slow: Promise<ContainerMetadata | undefined> | undefined;
      const slowMeta = () =>
        (slow ??= meta.then((m) => m ?? (resolver && container.id ? resolver.settle?.(container.id, STORAGE_WAIT_MS) : undefined)).catch(() => undefined));
      // Image files (only sent when recording everything, or as a script's
      // interpreter) need no file facts: they cannot be drift themselves.
      const drifted = rec.layer !== 'LOWER' || isUnlinked(rec.fileFlags);
      if (drifted) work.push(fileFacts(rec, meta, slowMeta).then((f) => (ev.file = f)));
      if (ev.kind === 'exec') {
        const exec = ev.exec;
        if (drifted) work.push(parentExecutable(exec.hostPpid, procRoot).then((p) => p && (ev.parentExecutable = p)));
        if (exec.fileFlags & FileFlag.SCRIPT) work.push(scriptFacts(exec, ev, meta));
      }
      const fill = (m: ContainerMetadata): void => {
        if (m.runtime !== 'unknown') container.runtime = m.runtime;
        if (m.name) container.name = m.name;
        if (m.image) container.image = m.image;
        if (m.imageId) container.imageId = m.imageId;
        if (m.labels) container.labels = m.labels;
        if (m.kubernetes) container.kubernetes = { ...(container.podUid ? { podUid: container.podUid } : {}), ...m.kubernetes };
      };
      if (work.length === 0 && !(resolver && container.id)) return ev;
      return Promise.all(work).then(async () => {
        if (!resolver || !container.id) return ev;
        // A drift candidate (a file or a script) waits for a lookup already under way, up to
        // the storage wait: a container that exited at once is often the one being looked up.
        const candidate = drifted || (rec.fileFlags & FileFlag.SCRIPT) !== 0;
        const m = (await meta) ?? (candidate ? await slowMeta() : undefined);
        if (m) fill(m);
        else metrics.inc('enrichment_incomplete_total');
        return ev;
      });
    },
  };
}
