// The store thread of the backend's ingest: the store's writes run here, so
// the gRPC event loop (auth, admission, keepalive, shutdown) never waits on
// them. For SQLite the requests arrive checked and packed (checker.ts); for
// PostgreSQL they arrive as bytes and are checked here, each finding turned
// into its row before the next is decoded (ingestAsRows): then only rows,
// not decoded findings, wait for the database in this thread's small young
// generation. (Checked on the event loop instead, they grew the main
// thread's young generation to 128 MB: RSS ~390 MiB against ~260.)
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { ingest, ingestAsRows, ingestPacked, ingestPackedGroupSync, isGroupingStore, isRowStore, type IngestLimits, type IngestOutcome, type PackedRequest } from './ingest.js';
import { openStore } from './open-store.js';
import type { Checked, Took } from './checker.js';

export interface WorkerConfig extends IngestLimits {
  db: string;
  poolSize: number;
}

// a group is bounded by count and size, to keep the commit's latency short
const MAX_GROUP_REQUESTS = 32;
const MAX_GROUP_BYTES = 48 << 20;

export type WorkerRequest = { op: 'ingest'; seq: number; buf: Uint8Array } | { op: 'close' };

const { config, checked } = workerData as { config: WorkerConfig; checked?: MessagePort };
const port = parentPort!;
const answer = (seq: number, outcome: IngestOutcome) => port.postMessage({ op: 'done', seq, outcome });
const immediate = () => new Promise((r) => setImmediate(r));

try {
  const store = await openStore(config.db, { poolSize: config.poolSize });
  // PostgreSQL: requests wait here as bytes; only as many as the store has
  // connections are checked and written at once.
  const waiting: Array<Extract<WorkerRequest, { op: 'ingest' }>> = [];
  let running = 0;
  const pump = () => {
    while (running < config.poolSize && waiting.length) {
      running++;
      const m = waiting.shift()!;
      void (isRowStore(store) ? ingestAsRows(store, m.buf, config) : ingest(store, m.buf, config))
        .then(
          (outcome) => answer(m.seq, outcome),
          (err: Error) => answer(m.seq, { kind: 'unavailable', message: err.message }),
        )
        .finally(() => {
          running--;
          pump();
        });
    }
  };

  port.on('message', (m: WorkerRequest) => {
    if (m.op === 'close') {
      checked?.close();
      void store.close().finally(() => port.postMessage({ op: 'closed' }));
      return;
    }
    waiting.push(m);
    pump();
  });

  if (checked && isGroupingStore(store)) {
    await store.checkpointInBackground?.();
    // SQLite: whatever the check thread handed over while the last group was
    // written goes into the next transaction together (see SqliteStore.transaction).
    const ready: Array<{ seq: number; packed: PackedRequest }> = [];
    let writing = false;
    const size = (p: PackedRequest) => (p.kind === 'rows' ? p.rows.bytes.byteLength : 0);
    const rows = (p: PackedRequest) => (p.kind === 'rows' ? p.count : 0);
    const writeGroups = async () => {
      if (writing) return;
      writing = true;
      await immediate(); // requests handed over together join the first group too
      while (ready.length) {
        const group: typeof ready = [];
        let bytes = 0;
        while (ready.length && group.length < MAX_GROUP_REQUESTS && bytes < MAX_GROUP_BYTES) {
          const m = ready.shift()!;
          group.push(m);
          bytes += size(m.packed);
        }
        checked.postMessage({ op: 'took', rows: group.reduce((n, m) => n + rows(m.packed), 0) } satisfies Took);
        const outcomes = ingestPackedGroupSync(store, group.map((m) => m.packed));
        if (outcomes) group.forEach((m, i) => answer(m.seq, outcomes[i]!));
        else for (const m of group) answer(m.seq, await ingestPacked(store, m.packed).catch((err: Error): IngestOutcome => ({ kind: 'unavailable', message: err.message })));
        // the rows are stored (their strings are copies): the buffers go back to be packed into again
        const spare = group.flatMap((m) => (m.packed.kind === 'rows' ? [m.packed.rows.bytes.buffer as ArrayBuffer] : []));
        checked.postMessage({ op: 'took', rows: 0, spare } satisfies Took, spare);
        await immediate(); // let the next requests' messages in
      }
      writing = false;
    };
    checked.on('message', (m: Checked) => {
      ready.push(m);
      void writeGroups();
    });
  }
  port.postMessage({ op: 'ready' });
} catch (err) {
  port.postMessage({ op: 'failed', message: (err as Error).message });
}
