// The ingest worker thread: decoding, validation and the store's writes run
// here, so the gRPC event loop (auth, admission, keepalive, shutdown) never
// waits on them.
import { parentPort, workerData } from 'node:worker_threads';
import { ingest, type IngestLimits } from './ingest.js';
import { openStore } from './store.js';

export interface WorkerConfig extends IngestLimits {
  db: string;
  poolSize: number;
}

export type WorkerRequest = { op: 'ingest'; seq: number; buf: Uint8Array } | { op: 'close' };

const config = workerData as WorkerConfig;
const port = parentPort!;

try {
  const store = await openStore(config.db, { poolSize: config.poolSize });
  // Requests wait here as bytes; only as many as the store has connections
  // are decoded at once (a decoded batch is ten times its encoded size).
  const waiting: Array<Extract<WorkerRequest, { op: 'ingest' }>> = [];
  let running = 0;
  const pump = () => {
    while (running < config.poolSize && waiting.length) {
      const m = waiting.shift()!;
      running++;
      ingest(store, m.buf, config)
        .then(
          (outcome) => port.postMessage({ op: 'done', seq: m.seq, outcome }),
          (err: Error) => port.postMessage({ op: 'done', seq: m.seq, outcome: { kind: 'unavailable', message: err.message } }),
        )
        .finally(() => {
          running--;
          pump();
        });
    }
  };
  port.on('message', (m: WorkerRequest) => {
    if (m.op === 'close') {
      void store.close().finally(() => port.postMessage({ op: 'closed' }));
      return;
    }
    waiting.push(m);
    pump();
  });
  port.postMessage({ op: 'ready' });
} catch (err) {
  port.postMessage({ op: 'failed', message: (err as Error).message });
}
