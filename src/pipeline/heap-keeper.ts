// What the sensor's V8 heap keeps resident between and during bursts.
//
// V8 grows the young generation to its maximum (32 MiB resident on a 64-bit
// Node) as soon as the start-up or a burst allocates quickly, and never gives
// those pages back while the process is idle; and under a steady stream of
// events a small share of them is promoted and piles up in the old
// generation as garbage until V8's own limit starts a full collection. Two
// bounds, both driven by the batches the pipeline sees (an idle sensor is
// never woken for them):
// - quiet: once no batch has arrived for quietMs after some did (start-up
//   included), one memory-reducing collection, which also shrinks the young
//   generation to its minimum and returns the freed pages to the kernel;
// - busy: at most every checkMs while batches flow, a full collection when
//   the old generation grew by more than oldGrowthBytes since the last one.
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Metrics } from './metrics.js';

type GcOptions = { type: 'major' | 'minor'; execution: 'sync' | 'async'; flavor?: 'regular' | 'last-resort' };
type Gc = (opts: GcOptions) => Promise<void> | void;

let gcFn: Gc | undefined;
/** V8's gc(), also without --expose-gc: exposed to a fresh context, which is all the flag changes. */
function v8Gc(): Gc {
  if (gcFn) return gcFn;
  const own = (globalThis as { gc?: Gc }).gc;
  if (own) return (gcFn = own);
  setFlagsFromString('--expose-gc');
  return (gcFn = runInNewContext('gc') as Gc);
}

export function oldSpaceUsed(): number {
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'old_space') return s.space_used_size;
  return 0;
}

export interface HeapKeeperOptions {
  /** No batch for this long after some: settle (default 5 s). */
  quietMs?: number;
  /** While batches flow, how often the old generation is looked at (default 1 s). */
  checkMs?: number;
  /** Old-generation growth since the last full collection that starts one (default 8 MiB). */
  oldGrowthBytes?: number;
  metrics?: Metrics;
}

export class HeapKeeper {
  private readonly quietMs: number;
  private readonly checkMs: number;
  private readonly oldGrowth: number;
  private lastBatch = 0;
  private lastCheck = 0;
  private baseline: number;
  private quietTimer: NodeJS.Timeout | undefined;
  private collecting = false;
  private closed = false;

  constructor(private readonly opts: HeapKeeperOptions = {}) {
    this.quietMs = opts.quietMs ?? 5_000;
    this.checkMs = opts.checkMs ?? 1_000;
    this.oldGrowth = opts.oldGrowthBytes ?? 8 << 20;
    this.baseline = oldSpaceUsed();
    opts.metrics?.inc('heap_collections_total', { reason: 'quiet' }, 0);
    opts.metrics?.inc('heap_collections_total', { reason: 'old_growth' }, 0);
  }

  /** A batch went through the pipeline. */
  activity(now = performance.now()): void {
    if (this.closed) return;
    this.lastBatch = now;
    if (!this.quietTimer) this.armQuiet(this.quietMs);
    if (now - this.lastCheck < this.checkMs || this.collecting) return;
    this.lastCheck = now;
    if (oldSpaceUsed() - this.baseline <= this.oldGrowth) return;
    this.collecting = true;
    this.opts.metrics?.inc('heap_collections_total', { reason: 'old_growth' });
    // Async: V8 runs it as a task of its own, between two batches.
    Promise.resolve(v8Gc()({ type: 'major', execution: 'async' }))
      .catch(() => undefined)
      .finally(() => {
        this.collecting = false;
        this.baseline = oldSpaceUsed();
      });
  }

  /** One memory-reducing full collection now; the young generation shrinks and freed pages go back. */
  settle(): void {
    v8Gc()({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    this.baseline = oldSpaceUsed();
    this.opts.metrics?.inc('heap_collections_total', { reason: 'quiet' });
  }

  private armQuiet(ms: number): void {
    this.quietTimer = setTimeout(() => {
      this.quietTimer = undefined;
      if (this.closed) return;
      const since = performance.now() - this.lastBatch;
      if (since < this.quietMs) return this.armQuiet(this.quietMs - since);
      this.settle();
    }, ms);
    this.quietTimer.unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.quietTimer);
    this.quietTimer = undefined;
  }
}
