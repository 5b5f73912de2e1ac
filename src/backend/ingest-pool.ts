// The main thread's side of the ingest worker: hands requests on, counts
// the findings waiting to be stored (the backpressure the server admits
// against), and stops the worker on shutdown.
import { MessageChannel, Worker } from 'node:worker_threads';
import { ingest, type IngestLimits, type IngestOutcome } from './ingest.js';
import { isPostgresUrl, openStore } from './open-store.js';
import type { FindingStore } from './store.js';
import type { WorkerConfig, WorkerRequest } from './ingest-worker.js';
import { Checker } from './checker.js';
import { startMallocTrims } from './malloc-trimmer.js';

/** Where the server hands request bytes to be stored. */
export interface Ingester {
  queuedRows: number;
  /** buf is the ingest's from then on: it may be moved to another thread or freed once checked. */
  submit(buf: Uint8Array, rows: number): Promise<IngestOutcome>;
  close(graceMs: number): Promise<void>;
}

/**
 * The same work on the event loop, for the sensor's embedded backend (one
 * sensor's findings on loopback): no second V8 isolate in the sensor's memory.
 */
export class InlineIngest implements Ingester {
  queuedRows = 0;
  private readonly running = new Set<Promise<unknown>>();

  private constructor(private readonly store: FindingStore, private readonly limits: IngestLimits) {}

  static async start(config: WorkerConfig): Promise<InlineIngest> {
    return new InlineIngest(await openStore(config.db, { poolSize: config.poolSize }), config);
  }

  submit(buf: Uint8Array, rows: number): Promise<IngestOutcome> {
    this.queuedRows += rows;
    const p = ingest(this.store, buf, this.limits)
      .catch((err: Error): IngestOutcome => ({ kind: 'unavailable', message: err.message }))
      .finally(() => {
        this.queuedRows -= rows;
        this.running.delete(p);
      });
    this.running.add(p);
    return p;
  }

  async close(graceMs: number): Promise<void> {
    await Promise.race([Promise.allSettled([...this.running]), new Promise((r) => setTimeout(r, graceMs).unref())]);
    await this.store.close();
  }
}

type WorkerMessage = { op: string; seq?: number; outcome?: IngestOutcome; message?: string };

/**
 * The ingest, its writes off the event loop. SQLite: requests are decoded
 * and checked on the event loop (checker.ts) and written by the worker
 * thread, so both cores work. PostgreSQL: the worker does both (the
 * database server does the writing).
 */
export class IngestWorker implements Ingester {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (o: IngestOutcome) => void; rows: number }>();
  /** Findings sent to the worker and not yet answered. */
  queuedRows = 0;

  private readonly stopTrims = startMallocTrims();

  private constructor(private readonly store: Worker, private readonly check: Checker | null) {
    store.on('message', (m: WorkerMessage) => {
      if (m.op !== 'done') return;
      const w = this.waiting.get(m.seq!);
      if (!w) return;
      this.waiting.delete(m.seq!);
      this.queuedRows -= w.rows;
      w.resolve(m.outcome!);
    });
    store.on('error', (err) => this.failAll(err.message));
    store.on('exit', () => this.failAll('ingest worker exited'));
  }

  static async start(config: WorkerConfig): Promise<IngestWorker> {
    const sqlite = !isPostgresUrl(config.db);
    const channel = sqlite ? new MessageChannel() : null;
    // 8 MB young generations. PostgreSQL holds two decoded batches (see the
    // pool size) and its heap peaked ~35 MiB lower at 8 MB than at 32, at the
    // same CPU per finding. SQLite: the thread gets rows as bytes, not
    // decoded findings.
    const store = new Worker(new URL('./ingest-worker.js', import.meta.url), {
      workerData: { config, checked: channel?.port1 },
      transferList: channel ? [channel.port1] : [],
      resourceLimits: { maxYoungGenerationSizeMb: 8 },
    });
    try {
      await ready(store);
    } catch (err) {
      channel?.port2.close();
      await store.terminate();
      throw err;
    }
    return new IngestWorker(store, channel ? new Checker(channel.port2, { maxFindingsPerRequest: config.maxFindingsPerRequest }) : null);
  }

  submit(buf: Uint8Array, rows: number): Promise<IngestOutcome> {
    const seq = ++this.seq;
    this.queuedRows += rows;
    return new Promise((resolve) => {
      this.waiting.set(seq, { resolve, rows });
      // a request that owns its memory moves to the worker instead of being copied
      const own = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength && buf.buffer instanceof ArrayBuffer;
      if (this.check) this.check.push(seq, buf);
      else this.store.postMessage({ op: 'ingest', seq, buf } satisfies WorkerRequest, own ? [buf.buffer as ArrayBuffer] : []);
    });
  }

  private failAll(message: string): void {
    for (const [seq, w] of this.waiting) {
      this.waiting.delete(seq);
      this.queuedRows -= w.rows;
      w.resolve({ kind: 'unavailable', message });
    }
  }

  /** Lets writes in progress finish (up to graceMs), closes the store, ends the threads. */
  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.store.on('message', (m: { op: string }) => m.op === 'closed' && resolve()));
    const drained = new Promise<void>((resolve) => {
      const tick = () => (this.waiting.size === 0 ? resolve() : setTimeout(tick, 10));
      tick();
    });
    const timeout = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
    await Promise.race([drained, timeout(graceMs)]);
    this.check?.close();
    this.stopTrims();
    this.store.postMessage({ op: 'close' } satisfies WorkerRequest);
    await Promise.race([closed, timeout(500)]);
    await this.store.terminate();
  }
}

function ready(worker: Worker): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onMessage = (m: WorkerMessage) => {
      if (m.op === 'ready') (worker.off('message', onMessage), resolve());
      if (m.op === 'failed') (worker.off('message', onMessage), reject(new Error(m.message)));
    };
    worker.on('message', onMessage);
    worker.once('error', reject);
  });
}
