// Enrichment: host or container, what the node knows about the container,
// and facts about the file (content hash, same as the image, the layer of a
// #! script). Lookups never hold the stream for long: metadata answers from
// cache or gives up after its wait and the event goes on (counted).
import { readlink } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import type { MetadataResolver } from '../enrich/metadata.js';
import { OverlayFacts } from '../enrich/overlay-facts.js';
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
}

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
  const { metrics, resolver } = opts;

  /** The process, then its ancestors up to the container's init: whoever is still alive. */
  const lineage = (rec: DecodedEvent): number[] =>
    rec.kind === 'exec' ? [rec.hostPid, ...rec.ancestors.map((a) => a.hostPid), rec.sessionHostPid] : [rec.hostPid];

  async function fileFacts(rec: DecodedEvent): Promise<FileFacts> {
    const facts: FileFacts = {};
    const key = `${rec.dev}:${rec.inode}:${rec.ctimeSec}:${rec.ctimeNsec}`;
    const dirs = rec.layer.startsWith('UPPER') ? await overlay.overlayOf(rec.mntNs, lineage(rec)) : null;
    // An exec'd file is readable through /proc/<pid>/exe even when unlinked or a memfd;
    // once the process is gone, an upper-layer file is still in the upper dir.
    let sha = rec.kind === 'exec' ? await overlay.hash(key, `${procRoot}/${rec.hostPid}/exe`) : undefined;
    if (!sha && dirs && !rec.pathTruncated) sha = await overlay.hash(key, `${dirs.upper}${rec.path}`);
    if (!sha && rec.kind === 'mmap_exec') sha = await overlay.hash(key, `${procRoot}/${rec.hostPid}/root${rec.path}`);
    if (sha) facts.sha256 = sha;
    else metrics.inc('file_hash_unavailable_total');
    if (sha && dirs && rec.layer === 'UPPER_COPIED_UP') {
      const image = await overlay.imageHash(dirs, rec.path);
      if (image) facts.sameAsImage = image === sha;
    }
    return facts;
  }

  async function scriptFacts(exec: ExecEvent, ev: ExecDetection): Promise<void> {
    const path = exec.filename;
    ev.script = { path };
    const seen = exec.scriptLayer; // the kernel saw the script itself: no lookup, no race
    if (seen) {
      ev.script.layer = seen;
      ev.script.source = 'kernel';
      return;
    }
    const dirs = await overlay.overlayOf(exec.mntNs, lineage(exec));
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
      // Image files (only sent when recording everything, or as a script's
      // interpreter) need no file facts: they cannot be drift themselves.
      const drifted = rec.layer !== 'LOWER' || isUnlinked(rec.fileFlags);
      if (drifted) work.push(fileFacts(rec).then((f) => (ev.file = f)));
      if (ev.kind === 'exec') {
        const exec = ev.exec;
        if (drifted) work.push(parentExecutable(exec.hostPpid, procRoot).then((p) => p && (ev.parentExecutable = p)));
        if (exec.fileFlags & FileFlag.SCRIPT) work.push(scriptFacts(exec, ev));
      }
      if (resolver && container.id) {
        work.push(
          resolver.resolve(container.id).then((meta) => {
            if (!meta) return metrics.inc('enrichment_incomplete_total');
            if (meta.runtime !== 'unknown') container.runtime = meta.runtime;
            if (meta.name) container.name = meta.name;
            if (meta.image) container.image = meta.image;
            if (meta.imageId) container.imageId = meta.imageId;
            if (meta.labels) container.labels = meta.labels;
            if (meta.kubernetes) container.kubernetes = { ...(container.podUid ? { podUid: container.podUid } : {}), ...meta.kubernetes };
          }),
        );
      }
      if (work.length === 0) return ev;
      return Promise.all(work).then(() => ev);
    },
  };
}
