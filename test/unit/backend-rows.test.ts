// The SQLite ingest's hand-over and its container lookup: rows packed as
// bytes on the event loop come out the same in the store thread (non-ASCII
// too), and a container filter by id, id prefix or name finds the findings
// through the containers table, also in a database written before it existed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { packRows, storeRowOf, unpackRows } from '../../src/backend/checked-rows.js';
import { SqliteStore } from '../../src/backend/sqlite-store.js';
import { checkFinding } from '../../src/backend/validate.js';
import { realisticFinding } from '../helpers/load.js';

const checked = (i: number, id = `r-${i}`) => {
  const f = realisticFinding(i, id);
  f.container!.labels!['note'] = `größe ✓ 日本 ${i}`;
  const c = checkFinding(f, 0);
  assert.ok(c.ok);
  return c.finding;
};

test('packed rows unpack to the same rows (UTF-8, empty fields, no sha256)', () => {
  const findings = [checked(1), checked(2), checked(3)];
  delete findings[1]!.process!.executable!.sha256;
  findings[2]!.kubernetes!.namespace = '';
  const rows = findings.map(storeRowOf);
  assert.deepEqual(unpackRows(packRows(rows)), rows);
  assert.equal(rows[1]!.fleet, null);
});

test('container filter by id, id prefix and name goes through the containers table; an older database gets it filled', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-rows-'));
  try {
    const path = join(dir, 'f.db');
    const first = SqliteStore.open(path);
    first.insertSync(Array.from({ length: 50 }, (_, i) => checked(i)));
    await first.close();
    // as a database from before the containers table
    const db = new DatabaseSync(path);
    db.exec('DROP TABLE containers');
    db.close();
    const store = SqliteStore.open(path);
    const sample = realisticFinding(7);
    const expected = Array.from({ length: 50 }, (_, i) => realisticFinding(i)).filter((f) => f.container!.id === sample.container!.id).length;
    for (const container of [sample.container!.id!, sample.container!.id!.slice(0, 12), sample.container!.name!]) {
      const got = await store.query({ container });
      assert.equal(got.length, expected, container);
      assert.ok(got.every((f) => f.container!.id === sample.container!.id));
    }
    assert.equal((await store.query({ container: 'no-such-container' })).length, 0);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
