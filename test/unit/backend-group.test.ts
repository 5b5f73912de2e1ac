// SQLite ingest in groups: the requests waiting in the worker share one
// transaction. A group the store refuses is rolled back whole (nothing of it
// stored, nothing of it remembered), and its requests are stored one by one,
// the refused finding bisected out. Real SQLite files; the refusal is a real
// trigger, not a stub.
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { ingestGroupSync } from '../../src/backend/ingest.js';
import { IngestWorker } from '../../src/backend/ingest-pool.js';
import { SqliteStore } from '../../src/backend/sqlite-store.js';
import { withSqliteFile } from '../helpers/sqlite-file.js';
import { encodeRequest, realisticFinding } from '../helpers/load.js';

const limits = { maxFindingsPerRequest: 10_000 };
const request = (r: number, n: number, poison?: number) =>
  encodeRequest(Array.from({ length: n }, (_, i) => realisticFinding(r * n + i, i === poison ? `poison-${r}` : `g-${r}-${i}`)));

const withDb = (fn: (path: string) => Promise<void>) => withSqliteFile('group', fn);

function refuse(path: string, idPrefix: string) {
  const db = new DatabaseSync(path);
  db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON findings WHEN NEW.id LIKE '${idPrefix}%' BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END`);
  db.close();
}

/** Per sha256, the distinct containers of the stored findings and what the fleet counters say. */
function fleetAgrees(path: string) {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const rows = db
      .prepare(
        `SELECT b.sha256, b.containers AS counted, (SELECT count(DISTINCT container_id) FROM findings f WHERE f.sha256 = b.sha256) AS stored
         FROM fleet_binaries b`,
      )
      .all() as Array<{ sha256: string; counted: number; stored: number }>;
    for (const r of rows) assert.equal(Number(r.counted), Number(r.stored), `containers of ${r.sha256}`);
    return rows.length;
  } finally {
    db.close();
  }
}

test('a group is one transaction: all of it is stored, or (refused) none of it and nothing of it remembered', withDb(async (path) => {
  const store = SqliteStore.open(path);
  try {
    refuse(path, 'poison-');
    assert.equal(ingestGroupSync(store, [request(0, 40), request(1, 40, 5), request(2, 40)], limits), null);
    assert.equal(await store.count(), 0);
    assert.equal(fleetAgrees(path), 0);

    const out = ingestGroupSync(store, [request(0, 40), request(2, 40), request(0, 40)], limits);
    assert.ok(out);
    assert.deepEqual(out.map((o) => (o.kind === 'ok' ? [o.stored, o.duplicates] : o.kind)), [[40, 0], [40, 0], [0, 40]]);
    assert.equal(await store.count(), 80);
    // the counters of the rolled-back group were not kept in memory: they match the rows
    assert.ok(fleetAgrees(path) > 0);
    // a finding stored in an earlier group is marked new once, in the finding that first carried it
    const isNew = (await store.query({ limit: 1000 })).filter((f) => f.fleet?.isNew).length;
    assert.equal(isNew, new Set((await store.query({ limit: 1000 })).map((f) => f.process!.executable!.sha256)).size);
  } finally {
    await store.close();
  }
}));

test('through the ingest worker: a refused finding in one of several concurrent requests is rejected alone, every other finding stored once', withDb(async (path) => {
  SqliteStore.open(path).close();
  refuse(path, 'poison-');
  const worker = await IngestWorker.start({ db: path, poolSize: 4, maxFindingsPerRequest: limits.maxFindingsPerRequest });
  try {
    const outs = await Promise.all([0, 1, 2, 3].map((r) => worker.submit(request(r, 64, r === 2 ? 7 : undefined), 64)));
    outs.forEach((o, r) => {
      assert.equal(o.kind, 'ok', JSON.stringify(o));
      if (o.kind !== 'ok') return;
      assert.equal(o.stored, r === 2 ? 63 : 64);
      assert.deepEqual(o.rejected.map((x) => x.id), r === 2 ? ['poison-2'] : []);
    });
    // sent again (a sensor that lost the answers): all duplicates
    const again = await Promise.all([0, 1, 3].map((r) => worker.submit(request(r, 64), 64)));
    assert.deepEqual(again.map((o) => (o.kind === 'ok' ? o.duplicates : -1)), [64, 64, 64]);
  } finally {
    await worker.close(1000);
  }
  const store = SqliteStore.open(path, { readOnly: true });
  try {
    assert.equal(await store.count(), 4 * 64 - 1);
  } finally {
    await store.close();
  }
  assert.ok(fleetAgrees(path) > 0);
  // bodies written from bytes are stored as text that SQL's JSON functions read, with the fleet appended
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const kinds = db.prepare(`SELECT typeof(body) AS t, count(*) AS n, sum(json_extract(body, '$.id') = id) AS ids,
      sum(json_extract(body, '$.fleet.containers') > 0) AS fleet FROM findings GROUP BY 1`).all();
    assert.deepEqual(kinds.map((k) => ({ ...k })), [{ t: 'text', n: 4 * 64 - 1, ids: 4 * 64 - 1, fleet: 4 * 64 - 1 }]);
  } finally {
    db.close();
  }
}));

test("the ingest worker frees a request's bytes once checked, only when their buffer holds nothing else", withDb(async (path) => {
  const worker = await IngestWorker.start({ db: path, poolSize: 4, maxFindingsPerRequest: limits.maxFindingsPerRequest });
  // as gRPC hands them over: a 5-byte frame header, then the message, in one buffer
  const framed = (body: Buffer) => {
    const b = Buffer.alloc(5 + body.length);
    body.copy(b, 5);
    return b.subarray(5);
  };
  try {
    const own = framed(request(0, 32));
    const shared = Buffer.concat([request(1, 32), Buffer.alloc(64 << 10)]).subarray(0, request(1, 32).length);
    const outs = await Promise.all([worker.submit(own, 32), worker.submit(shared, 32)]);
    assert.deepEqual(outs.map((o) => (o.kind === 'ok' ? o.stored : o.kind)), [32, 32]);
    assert.equal(own.buffer.byteLength, 0, 'the request buffer was freed');
    assert.equal(shared.length, request(1, 32).length, 'a view into a larger buffer is left alone');
    assert.deepEqual(shared, request(1, 32));
  } finally {
    await worker.close(1000);
  }
}));
