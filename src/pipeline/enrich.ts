// Enrichment: host or container, and what the node knows about the
// container. Lookups never hold the stream for long: the resolver answers
// from cache or gives up after its wait and the event goes on (counted).
import { readlink } from 'node:fs/promises';
import type { MetadataResolver } from '../enrich/metadata.js';
import type { DetectionEvent } from '../signatures/sdk.js';
import { containerOf, type HostNamespaces } from './container.js';
import type { ExecEvent } from './decode.js';
import type { Metrics } from './metrics.js';

export interface Enricher {
  enrich(exec: ExecEvent): Promise<DetectionEvent> | DetectionEvent;
}

/** The parent's executable, if it is still alive (it usually is: it just forked us). */
async function parentExecutable(hostPpid: number, procRoot: string): Promise<string | undefined> {
  if (hostPpid <= 0) return undefined;
  try {
    return await readlink(`${procRoot}/${hostPpid}/exe`);
  } catch {
    return undefined;
  }
}

export function createEnricher(host: HostNamespaces, metrics: Metrics, resolver?: MetadataResolver, procRoot = '/proc'): Enricher {
  return {
    async enrich(exec) {
      const container = containerOf(exec, host);
      const ev: DetectionEvent = { kind: 'exec', exec, container };
      // Only containers are worth the syscall; host events are dropped after this.
      if (container.inContainer) {
        const parent = await parentExecutable(exec.hostPpid, procRoot);
        if (parent) ev.parentExecutable = parent;
      }
      if (!resolver || !container.id) return ev;
      return resolver.resolve(container.id).then((meta) => {
        if (!meta) {
          metrics.inc('enrichment_incomplete_total');
          return ev;
        }
        container.runtime = meta.runtime !== 'unknown' ? meta.runtime : container.runtime;
        if (meta.name) container.name = meta.name;
        if (meta.image) container.image = meta.image;
        if (meta.imageId) container.imageId = meta.imageId;
        if (meta.labels) container.labels = meta.labels;
        if (meta.kubernetes) container.kubernetes = { podUid: container.podUid, ...meta.kubernetes };
        return ev;
      });
    },
  };
}
