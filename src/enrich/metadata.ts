// Container metadata resolver: asks the node's runtimes (podman state, CRI)
// and caches answers in a bounded LRU with a TTL, including "not found"
// answers for a shorter time. A caller never waits longer than waitMs: after
// that it goes on with what is known while the lookup finishes in the
// background and fills the cache for the next event.
import { LRUCache } from 'lru-cache';

export interface KubernetesMetadata {
  namespace?: string;
  pod?: string;
  podUid?: string;
  container?: string;
}

export interface ContainerMetadata {
  id: string;
  runtime: 'podman' | 'docker' | 'containerd' | 'cri-o' | 'unknown';
  name?: string;
  image?: string;
  imageId?: string;
  labels?: Record<string, string>;
  kubernetes?: KubernetesMetadata;
}

export interface MetadataSource {
  readonly name: string;
  lookup(id: string): Promise<ContainerMetadata | null>;
  /** Optional cheap liveness check used to evict containers that are gone. */
  exists?(id: string): Promise<boolean>;
}

export interface ResolverOptions {
  maxEntries?: number;
  ttlMs?: number;
  negativeTtlMs?: number;
  maxConcurrent?: number;
  waitMs?: number;
}

export interface ResolverMetrics {
  cache_hits: number;
  cache_misses: number;
  negative_hits: number;
  lookups: number;
  lookup_errors: number;
  wait_timeouts: number;
  queue_rejected: number;
  evicted_dead: number;
}

type Entry = { meta: ContainerMetadata | null; source?: string };

export class MetadataResolver {
  readonly metrics: ResolverMetrics = {
    cache_hits: 0,
    cache_misses: 0,
    negative_hits: 0,
    lookups: 0,
    lookup_errors: 0,
    wait_timeouts: 0,
    queue_rejected: 0,
    evicted_dead: 0,
  };
  private cache: LRUCache<string, Entry>;
  private inflight = new Map<string, Promise<ContainerMetadata | null>>();
  private readonly negativeTtlMs: number;
  private readonly maxConcurrent: number;
  private readonly waitMs: number;

  constructor(
    private readonly sources: MetadataSource[],
    opts: ResolverOptions = {},
  ) {
    this.cache = new LRUCache<string, Entry>({ max: opts.maxEntries ?? 4096, ttl: opts.ttlMs ?? 5 * 60_000 });
    this.negativeTtlMs = opts.negativeTtlMs ?? 15_000;
    this.maxConcurrent = opts.maxConcurrent ?? 4;
    this.waitMs = opts.waitMs ?? 250;
  }

  get size(): number {
    return this.cache.size;
  }

  /** Metadata for a container id, or undefined when not known within waitMs. */
  async resolve(id: string): Promise<ContainerMetadata | undefined> {
    const cached = this.cache.get(id);
    if (cached) {
      if (cached.meta) this.metrics.cache_hits++;
      else this.metrics.negative_hits++;
      return cached.meta ?? undefined;
    }
    this.metrics.cache_misses++;
    const pending = this.lookup(id);
    if (!pending) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((res) => {
      timer = setTimeout(() => res('timeout'), this.waitMs);
    });
    const result = await Promise.race([pending, timeout]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.metrics.wait_timeouts++;
      return undefined;
    }
    return result ?? undefined;
  }

  /** Evicts cached containers that their runtime no longer knows. */
  async sweep(): Promise<number> {
    let evicted = 0;
    for (const [id, entry] of this.cache.entries()) {
      if (!entry.meta) continue;
      const source = this.sources.find((s) => s.name === entry.source);
      if (!source?.exists) continue;
      const alive = await source.exists(id).catch(() => true);
      if (!alive) {
        this.cache.delete(id);
        evicted++;
      }
    }
    this.metrics.evicted_dead += evicted;
    return evicted;
  }

  private lookup(id: string): Promise<ContainerMetadata | null> | undefined {
    const existing = this.inflight.get(id);
    if (existing) return existing;
    if (this.inflight.size >= this.maxConcurrent) {
      this.metrics.queue_rejected++;
      return undefined;
    }
    this.metrics.lookups++;
    const p = this.askSources(id).finally(() => this.inflight.delete(id));
    this.inflight.set(id, p);
    return p;
  }

  private async askSources(id: string): Promise<ContainerMetadata | null> {
    let failed = false;
    for (const source of this.sources) {
      try {
        const meta = await source.lookup(id);
        if (meta) {
          this.cache.set(id, { meta, source: source.name });
          return meta;
        }
      } catch {
        failed = true;
        this.metrics.lookup_errors++;
      }
    }
    // A source that failed may know it next time: cache the miss only briefly.
    this.cache.set(id, { meta: null }, { ttl: failed ? Math.min(2_000, this.negativeTtlMs) : this.negativeTtlMs });
    return null;
  }
}
