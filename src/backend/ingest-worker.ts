// The store thread of the backend's ingest: the store's writes run here, so
// the gRPC event loop (auth, admission, keepalive, shutdown) never waits on
// them. For SQLite the requests arrive checked and packed (checker.ts); for
// PostgreSQL they arrive as bytes and are checked here, each finding turned
// into its row before the next is decoded (checkRows): then only rows,
// not decoded findings, wait for the database in this thread's small young
// generation. (Checked on the event loop instead, they grew the main
// thread's young generation to 128 MB: RSS ~390 MiB against ~260.)
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { checkRows, ingest, ingestPacked, ingestPackedGroupSync, isGroupingStore, isRowStore, storeCheckedRows, type CheckedRows, type IngestLimits, type IngestOutcome, type PackedRequest } from './ingest.js';
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
  // PostgreSQL: requests wait here as bytes. As many as the store has
  // connections are written at once; while they are, the next ones are
  // checked into rows (at most as many again, one per turn of the loop so
  // the connections' answers get in between), so this thread works while
  // PostgreSQL writes and a connection that frees finds a request ready.
  const waiting: Array<Extract<WorkerRequest, { op: 'ingest' }>> = [];
  const ready: Array<{ seq: number; checked: CheckedRows }> = [];
  let running = 0;
  let checking = false;
  const run = (seq: number, write: Promise<IngestOutcome>) => {
    running++;
    void write
      .then(
        (outcome) => answer(seq, outcome),
        (err: Error) => answer(seq, { kind: 'unavailable', message: err.message }),
      )
      .finally(() => {
        running--;
        pump();
      });
  };
  const pump = () => {
    if (!isRowStore(store)) {
      while (running < config.poolSize && waiting.length) {
        const m = waiting.shift()!;
        run(m.seq, ingest(store, m.buf, config));
      }
      return;
    }
    while (running < config.poolSize && ready.length) {
      const r = ready.shift()!;
      run(r.seq, storeCheckedRows(store, r.checked));
    }
    if (checking || !waiting.length || ready.length >= config.poolSize) return;
    checking = true;
    setImmediate(() => {
      checking = false;
      const m = waiting.shift();
      try {
        if (m) ready.push({ seq: m.seq, checked: checkRows(m.buf, config) });
      } catch (err) {
        answer(m!.seq, { kind: 'unavailable', message: (err as Error).message });
      }
      pump();
    });
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
