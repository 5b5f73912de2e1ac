// The SQLite ingest's hand-over: rows packed as bytes on the event loop come
// out the same in the store thread (non-ASCII too). (Filters, also on a
// database from before the origins table: backend-origins.test.ts.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bodiesWithFleet, bodyWithFleet, jsonText, PackedRowReader, packRows, storeRowOf, unpackRows, type StoreRow } from '../../src/backend/checked-rows.js';
import { checkFinding } from '../../src/backend/validate.js';
import { realisticFinding } from '../helpers/load.js';

/** A row read from packed bytes has its body as a view of them. */
const asText = (r: StoreRow): StoreRow => ({ ...r, json: jsonText(r) });

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
  assert.deepEqual(unpackRows(packRows(rows)).map(asText), rows);
  assert.equal(rows[1]!.fleet, null);
});

test('bodies as bytes (the fast path) and as text pack and join the same, fleet appended where it is set', () => {
  const text = [checked(1), checked(2), checked(3)].map(storeRowOf);
  const bytes: StoreRow[] = text.map((r) => ({ ...r, json: Buffer.from(r.json) }));
  assert.deepEqual(unpackRows(packRows(bytes)).map(asText), text);
  const fleet = [{ firstSeen: '2026-11-01T00:00:00.000Z', isNew: true, containers: 1, images: 1, hosts: 1 }, null, { containers: 2 }];
  const expected = text.map((r, i) => bodyWithFleet(jsonText(r), fleet[i]!));
  for (const rows of [text, bytes, [text[0]!, bytes[1]!, text[2]!]]) {
    const joined = bodiesWithFleet(rows, fleet, 0x1e);
    assert.deepEqual(joined.toString('utf8').split('\u001e'), expected);
    assert.ok(expected.every((b) => JSON.parse(b)));
  }
});

test('a packed row read on its own: its head (fleet key, foldOf) without the rest, and the row, in any order', () => {
  const findings = [checked(1), checked(2), checked(3)];
  delete findings[0]!.process!.executable!.sha256;
  findings[2]!.foldOf = 'r-2';
  const rows = findings.map(storeRowOf);
  const reader = new PackedRowReader(packRows(rows));
  assert.equal(reader.length, 3);
  for (const i of [2, 0, 1]) {
    assert.deepEqual(reader.head(i), { fleet: rows[i]!.fleet, foldOf: rows[i]!.foldOf });
    assert.deepEqual(asText(reader.row(i)), rows[i]);
  }
  assert.equal(reader.head(0).fleet, null);
  assert.equal(reader.head(2).foldOf, 'r-2');
  assert.equal(reader.head(1).fleet!.container, findings[1]!.container!.id);
});
