// The ingest worker thread: decoding, validation and the store's writes run
// here, so the gRPC event loop (auth, admission, keepalive, shutdown) never
// waits on them.
import { parentPort, workerData } from 'node:worker_threads';
import { ingest, ingestGroupSync, isGroupingStore, type IngestLimits, type IngestOutcome } from './ingest.js';
import { openStore } from './open-store.js';

export interface WorkerConfig extends IngestLimits {
  db: string;
  poolSize: number;
}

// a group is bounded like a request (by count and bytes), to keep the commit's latency short
const MAX_GROUP_REQUESTS = 32;
const MAX_GROUP_BYTES = 24 << 20;

export type WorkerRequest = { op: 'ingest'; seq: number; buf: Uint8Array } | { op: 'close' };

const config = workerData as WorkerConfig;
const port = parentPort!;

try {
  const store = await openStore(config.db, { poolSize: config.poolSize });
  // Requests wait here as bytes; only as many as the store has connections
  // are decoded at once (a decoded batch is ten times its encoded size).
  const waiting: Array<Extract<WorkerRequest, { op: 'ingest' }>> = [];
  let running = 0;
  const answer = (seq: number, outcome: IngestOutcome) => port.postMessage({ op: 'done', seq, outcome });
  const one = (m: Extract<WorkerRequest, { op: 'ingest' }>) =>
    ingest(store, m.buf, config).then(
      (outcome) => answer(m.seq, outcome),
      (err: Error) => answer(m.seq, { kind: 'unavailable', message: err.message }),
    );
  const pump = () => {
    while (running < config.poolSize && waiting.length) {
      running++;
      void one(waiting.shift()!).finally(() => {
        running--;
        pump();
      });
    }
  };
  // SQLite: whatever arrived while the last group was written goes into the
  // next transaction together (see SqliteStore.transaction).
  const pumpGroups = async () => {
    if (running || !isGroupingStore(store)) return;
    running = 1;
    // requests posted together join the first group too
    await new Promise((r) => setImmediate(r));
    while (waiting.length) {
      const group: typeof waiting = [];
      let bytes = 0;
      while (waiting.length && group.length < MAX_GROUP_REQUESTS && bytes < MAX_GROUP_BYTES) {
        const m = waiting.shift()!;
        group.push(m);
        bytes += m.buf.length;
      }
      const outcomes = group.length > 1 ? ingestGroupSync(store, group.map((m) => m.buf), config) : null;
      if (outcomes) group.forEach((m, i) => answer(m.seq, outcomes[i]!));
      else for (const m of group) await one(m);
      // let the next requests' messages in
      await new Promise((r) => setImmediate(r));
    }
    running = 0;
  };
  port.on('message', (m: WorkerRequest) => {
    if (m.op === 'close') {
      void store.close().finally(() => port.postMessage({ op: 'closed' }));
      return;
    }
    waiting.push(m);
    if (isGroupingStore(store)) void pumpGroups();
    else pump();
  });
  port.postMessage({ op: 'ready' });
} catch (err) {
  port.postMessage({ op: 'failed', message: (err as Error).message });
}
