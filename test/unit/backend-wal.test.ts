// The backend's SQLite WAL is checkpointed by a thread of its own
// (wal-checkpointer.ts): the WAL is copied into the database file while the
// writer goes on, reused from its start once past its bound, held back (not
// lost) by a reader's open snapshot, and gone after a clean shutdown. Real
// SQLite files and threads.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { IngestWorker } from '../../src/backend/ingest-pool.js';
import { SqliteStore } from '../../src/backend/sqlite-store.js';
import { withSqliteFile } from '../helpers/sqlite-file.js';
import { encodeRequest, realisticFinding } from '../helpers/load.js';

const batch = (r: number, n: number) => Array.from({ length: n }, (_, i) => realisticFinding(r * n + i, `w-${r}-${i}`));
const size = (file: string) => (existsSync(file) ? statSync(file).size : 0);

const withDb = (fn: (path: string) => Promise<void>) => withSqliteFile('wal', fn);

function integrity(path: string): { count: number; check: string } {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const count = Number((db.prepare('SELECT count(*) AS n FROM findings').get() as { n: number }).n);
    const check = String((db.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check);
    return { count, check };
  } finally {
    db.close();
  }
}

test('the checkpoint thread keeps the WAL under its bound while the writer commits, a reader holds it back without losing anything, and close leaves no WAL', withDb(async (path) => {
  const bound = 1 << 20;
  const batches = 60;
  const perBatch = 64;
  const store = SqliteStore.open(path);
  let walMax = 0;
  let heldMax = 0;
  try {
    await store.checkpointInBackground(bound);
    for (let r = 0; r < batches; r++) {
      store.insertSync(batch(r, perBatch));
      walMax = Math.max(walMax, size(`${path}-wal`));
    }
    // a reader's open snapshot: commits go on, the WAL cannot be reused behind it
    const reader = new DatabaseSync(path, { readOnly: true });
    reader.exec('BEGIN');
    const before = Number((reader.prepare('SELECT count(*) AS n FROM findings').get() as { n: number }).n);
    for (let r = batches; r < batches + 20; r++) {
      store.insertSync(batch(r, perBatch));
      heldMax = Math.max(heldMax, size(`${path}-wal`));
    }
    assert.equal(Number((reader.prepare('SELECT count(*) AS n FROM findings').get() as { n: number }).n), before, 'the reader keeps its snapshot');
    reader.exec('COMMIT');
    reader.close();
    for (let r = batches + 20; r < 2 * batches; r++) store.insertSync(batch(r, perBatch));
    assert.equal(await store.count(), 2 * batches * perBatch);
  } finally {
    await store.close();
  }
  const db = size(path);
  // Without checkpoints, or without the WAL reused, the WAL would hold every
  // page written (54 MB here); with them it stays at the bound plus what was
  // committed during one checkpoint (at the start, the thread's first one is
  // slow: a few commits).
  assert.ok(db > 8 * bound, `database ${db} bytes`);
  assert.ok(walMax * 3 < db, `WAL reached ${walMax} bytes with a bound of ${bound}, database ${db} bytes`);
  assert.ok(heldMax > walMax, 'the WAL grows while a reader holds it');
  assert.equal(existsSync(`${path}-wal`), false, 'no WAL after close');
  assert.deepEqual(integrity(path), { count: 2 * batches * perBatch, check: 'ok' });
}));

test('a reader in the middle of a query at shutdown: the store closes, the WAL stays, and the next open finds every finding', withDb(async (path) => {
  const store = SqliteStore.open(path);
  const reader = new DatabaseSync(path, { readOnly: true });
  try {
    await store.checkpointInBackground(1 << 20);
    store.insertSync(batch(0, 64));
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) AS n FROM findings').get();
    store.insertSync(batch(1, 64));
    await store.close();
    assert.ok(size(`${path}-wal`) > 0, 'the reader kept the WAL');
  } finally {
    await store.close();
    reader.close();
  }
  assert.deepEqual(integrity(path), { count: 128, check: 'ok' });
}));

test('through the ingest worker: findings reach the database file while it runs, a reader sees them, and shutdown empties the WAL while the reader stays open', withDb(async (path) => {
  const worker = await IngestWorker.start({ db: path, poolSize: 4, maxFindingsPerRequest: 10_000 });
  const requests = 12;
  const perRequest = 200;
  // as the server's own read connection: open across the store thread's close
  const reader = SqliteStore.open(path, { readOnly: true });
  try {
    const outs = await Promise.all(Array.from({ length: requests }, (_, r) => worker.submit(encodeRequest(batch(r, perRequest)), perRequest)));
    assert.deepEqual(outs.map((o) => (o.kind === 'ok' ? o.stored : o.kind)), Array(requests).fill(perRequest));
    // the store thread's auto-checkpoint is off; only the checkpoint thread copies pages into the file
    const stored = requests * perRequest * 2000;
    for (let i = 0; i < 500 && size(path) < stored; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(size(path) >= stored, `database file ${size(path)} bytes after ${requests * perRequest} findings`);
    assert.equal(await reader.count(), requests * perRequest);
    assert.equal((await reader.query({ host: 'node-3', limit: 10 })).length, 10);
    await worker.close(1000);
    assert.equal(size(`${path}-wal`), 0, 'the WAL is empty after the store thread closed');
  } finally {
    await worker.close(0);
    await reader.close();
  }
  assert.deepEqual(integrity(path), { count: requests * perRequest, check: 'ok' });
}));
