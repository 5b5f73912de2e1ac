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
//   generation to its minimum and returns the freed pages to the kernel,
//   and then the C heap's free pages (trimNative: malloc_trim);
//   after start-up always (it leaves garbage in every heap: V8's, array
//   buffers, malloc's; with a small semi-space the young generation alone
//   does not show it), later only when there is something to return (a young
//   generation grown past minYoungBytes, or old-generation growth): a lone
//   finding now and then costs no collection (one is about 20-50 ms of CPU);
// - busy: at most every checkMs while batches flow, a full collection when
//   the old generation grew by more than oldGrowthBytes (4 MiB) since the last one.
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

function space(name: string): { used: number; physical: number } {
  for (const s of getHeapSpaceStatistics()) if (s.space_name === name) return { used: s.space_used_size, physical: s.physical_space_size };
  return { used: 0, physical: 0 };
}

export const oldSpaceUsed = (): number => space('old_space').used;
/** Resident bytes of the young generation. */
export const youngSpaceBytes = (): number => space('new_space').physical;

export interface HeapKeeperOptions {
  /** No batch for this long after some: settle (default 5 s). */
  quietMs?: number;
  /** While batches flow, how often the old generation is looked at (default 1 s). */
  checkMs?: number;
  /** Old-generation growth since the last full collection that starts one (default 4 MiB). */
  oldGrowthBytes?: number;
  /** A quiet pipeline is settled only with a young generation at least this large, or old growth (default 4 MiB). */
  minYoungBytes?: number;
  metrics?: Metrics;
  /** After a settle: give the C heap's free pages back (the addon's mallocTrim). */
  trimNative?: () => void;
  /** The clock and the timer the quiet check runs on (default: performance.now and setTimeout). */
  timers?: KeeperTimers;
}

export interface KeeperTimers {
  now(): number;
  /** Calls fn once after ms; the returned cancel stops it. Must not keep the process alive. */
  after(ms: number, fn: () => void): () => void;
}

const realTimers: KeeperTimers = {
  now: () => performance.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

export class HeapKeeper {
  private readonly quietMs: number;
  private readonly checkMs: number;
  private readonly oldGrowth: number;
  private readonly minYoung: number;
  private lastBatch = 0;
  private lastCheck = 0;
  private baseline: number;
  private cancelQuiet: (() => void) | undefined;
  private readonly timers: KeeperTimers;
  private collecting: Promise<void> | undefined;
  private settled = false;
  private closed = false;

  constructor(private readonly opts: HeapKeeperOptions = {}) {
    this.quietMs = opts.quietMs ?? 5_000;
    this.checkMs = opts.checkMs ?? 1_000;
    this.oldGrowth = opts.oldGrowthBytes ?? 4 << 20;
    this.minYoung = opts.minYoungBytes ?? 4 << 20;
    this.timers = opts.timers ?? realTimers;
    this.baseline = oldSpaceUsed();
    opts.metrics?.inc('heap_collections_total', { reason: 'quiet' }, 0);
    opts.metrics?.inc('heap_collections_total', { reason: 'old_growth' }, 0);
  }

  /** A batch went through the pipeline. */
  activity(now = this.timers.now()): void {
    if (this.closed) return;
    this.lastBatch = now;
    if (!this.cancelQuiet) this.armQuiet(this.quietMs);
    if (now - this.lastCheck < this.checkMs || this.collecting) return;
    this.lastCheck = now;
    if (oldSpaceUsed() - this.baseline <= this.oldGrowth) return;
    this.opts.metrics?.inc('heap_collections_total', { reason: 'old_growth' });
    // Async: V8 runs it as a task of its own, between two batches.
    this.collecting = Promise.resolve(v8Gc()({ type: 'major', execution: 'async' }))
      .catch(() => undefined)
      .finally(() => {
        this.collecting = undefined;
        this.baseline = oldSpaceUsed();
      });
  }

  /** Settles when the collection started by activity(), if any, has finished. */
  async collected(): Promise<void> {
    await this.collecting;
  }

  /** One memory-reducing full collection now; the young generation shrinks and freed pages go back. */
  settle(): void {
    v8Gc()({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    this.settled = true;
    this.baseline = oldSpaceUsed();
    this.opts.trimNative?.();
    this.opts.metrics?.inc('heap_collections_total', { reason: 'quiet' });
  }

  private armQuiet(ms: number): void {
    this.cancelQuiet = this.timers.after(ms, () => {
      this.cancelQuiet = undefined;
      if (this.closed) return;
      const since = this.timers.now() - this.lastBatch;
      if (since < this.quietMs) return this.armQuiet(this.quietMs - since);
      if (!this.settled || youngSpaceBytes() >= this.minYoung || oldSpaceUsed() - this.baseline > this.oldGrowth / 2) this.settle();
    });
  }

  close(): void {
    this.closed = true;
    this.cancelQuiet?.();
    this.cancelQuiet = undefined;
  }
}
