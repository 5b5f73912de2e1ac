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
  /**
   * The container's overlay directories (host paths) as its runtime's
   * storage keeps them: they outlive the container's processes until the
   * container is removed. Only from the runtime, never from the container.
   */
  rootfs?: { upper: string; lowers: string[] };
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

/** Which source knows a runtime's containers best. */
const SOURCE_OF_RUNTIME: Partial<Record<ContainerMetadata['runtime'], string>> = {
  docker: 'docker',
  podman: 'podman',
  containerd: 'cri',
  'cri-o': 'cri',
};

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

  /**
   * Metadata for a container id, or undefined when not known within waitMs.
   * hint: the runtime the cgroup names; its source is asked first, so a
   * container that is gone a moment later is not kept waiting behind
   * runtimes that do not know it.
   */
  async resolve(id: string, hint?: ContainerMetadata['runtime'], waitMs = this.waitMs): Promise<ContainerMetadata | undefined> {
    const cached = this.cache.get(id);
    if (cached) {
      if (cached.meta) this.metrics.cache_hits++;
      else this.metrics.negative_hits++;
      return cached.meta ?? undefined;
    }
    this.metrics.cache_misses++;
    const pending = this.lookup(id, hint);
    if (!pending) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((res) => {
      timer = setTimeout(() => res('timeout'), waitMs);
    });
    const result = await Promise.race([pending, timeout]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.metrics.wait_timeouts++;
      return undefined;
    }
    return result ?? undefined;
  }

  /**
   * The answer of a lookup already under way, waiting up to waitMs for it;
   * what is cached otherwise. Starts no lookup of its own.
   */
  async settle(id: string, waitMs: number): Promise<ContainerMetadata | undefined> {
    const pending = this.inflight.get(id);
    if (!pending) return this.cache.get(id)?.meta ?? undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((res) => {
      timer = setTimeout(() => res(null), waitMs);
    });
    const result = await Promise.race([pending.catch(() => null), timeout]);
    clearTimeout(timer);
    return result ?? undefined;
  }

  /**
   * Starts a lookup now (a runtime announced the container), so an event
   * from a container that is gone a moment later finds its answer cached.
   */
  prefetch(id: string, hint?: ContainerMetadata['runtime']): void {
    if (this.cache.has(id)) return;
    void this.lookup(id, hint)?.catch(() => undefined);
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

  private lookup(id: string, hint?: ContainerMetadata['runtime']): Promise<ContainerMetadata | null> | undefined {
    const existing = this.inflight.get(id);
    if (existing) return existing;
    if (this.inflight.size >= this.maxConcurrent) {
      this.metrics.queue_rejected++;
      return undefined;
    }
    this.metrics.lookups++;
    const p = this.askSources(id, hint).finally(() => this.inflight.delete(id));
    this.inflight.set(id, p);
    return p;
  }

  private async askSources(id: string, hint?: ContainerMetadata['runtime']): Promise<ContainerMetadata | null> {
    let failed = false;
    const first = hint ? SOURCE_OF_RUNTIME[hint] : undefined;
    const ordered = first ? [...this.sources.filter((s) => s.name === first), ...this.sources.filter((s) => s.name !== first)] : this.sources;
    for (const source of ordered) {
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
