// SQLite filters through the origins table: a finding's container, image,
// namespace, host and sha256 are one key, and a filter finds its keys first,
// then the findings up to the time of the limit-th match. Every filter must
// give exactly what a plain scan gives (same findings, same order, ties in
// time broken by id), whichever index the store picks, and a database from
// before the table must read the same, read-only and once migrated.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import type { FindingJson } from '#gen/finding-json.js';
import { SqliteStore } from '../../src/backend/sqlite-store.js';
import type { FindingQuery } from '../../src/backend/store.js';
import { checkFinding } from '../../src/backend/validate.js';
import { realisticFinding } from '../helpers/load.js';

const N = 3000;
const T0 = Date.UTC(2026, 10, 1);

/** Findings whose times tie in sevens, ids out of time order, two signatures and an action. */
function findings(): FindingJson[] {
  return Array.from({ length: N }, (_, i) => {
    const f = realisticFinding(i, `o-${(i * 7_919) % N}-${i}`);
    f.time = new Date(T0 + Math.floor(i / 7) * 1000).toISOString();
    if (i % 3 === 0) f.signature!.id = 'drift.other';
    if (i % 11 === 0) f.action = 'prevented';
    const c = checkFinding(f, i);
    assert.ok(c.ok);
    return c.finding;
  });
}

const sample = realisticFinding(1234);
const QUERIES: Record<string, FindingQuery> = {
  'container name': { container: sample.container!.name! },
  'container id': { container: sample.container!.id! },
  'container id prefix': { container: sample.container!.id!.slice(0, 12) },
  'container glob': { container: 'web-1*', glob: true },
  namespace: { namespace: sample.kubernetes!.namespace! },
  'namespace glob (half the table)': { namespace: 'team-1*', glob: true },
  image: { image: sample.container!.image! },
  host: { host: sample.host!.hostname! },
  sha256: { sha256: sample.process!.executable!.sha256! },
  signature: { signature: 'drift.other' },
  action: { action: 'prevented' },
  since: { since: new Date(T0 + 200_000).toISOString() },
  'since and until': { since: new Date(T0 + 100_000).toISOString(), until: new Date(T0 + 150_000).toISOString() },
  'namespace and signature': { namespace: sample.kubernetes!.namespace!, signature: 'drift.other' },
  'host, image and since': { host: sample.host!.hostname!, image: sample.container!.image!, since: new Date(T0 + 50_000).toISOString() },
  'literal % is no wildcard': { namespace: 'team-%' },
  'no such container': { container: 'nothing-here' },
  everything: {},
};

const EMPTY = new Set(['literal % is no wildcard', 'no such container']);

/** What a filter means, as a plain scan over the findings. */
function matches(f: FindingJson, q: FindingQuery): boolean {
  const glob = (v: string) => new RegExp('^' + v.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
  const eq = (have: string | undefined, want: string | undefined) => !want || (q.glob && /[*?]/.test(want) ? glob(want).test(have ?? '') : have === want);
  const c = q.container;
  const container = !c || (q.glob && /[*?]/.test(c) ? glob(c).test(f.container!.id!) || glob(c).test(f.container!.name!)
    : f.container!.id === c || f.container!.name === c || (/^[0-9a-f]{3,63}$/.test(c) && f.container!.id!.startsWith(c)));
  return container && eq(f.kubernetes?.namespace, q.namespace) && eq(f.container?.image, q.image) && eq(f.host?.hostname, q.host)
    && eq(f.process?.executable?.sha256, q.sha256) && eq(f.signature?.id, q.signature) && eq(f.action ?? 'alert', q.action)
    && (!q.since || f.time! >= q.since) && (!q.until || f.time! < q.until);
}

function expected(all: FindingJson[], q: FindingQuery, limit: number): string[] {
  return all.filter((f) => matches(f, q)).sort((a, b) => (a.time! < b.time! ? -1 : a.time! > b.time! ? 1 : a.id! < b.id! ? -1 : a.id! > b.id! ? 1 : 0)).slice(0, limit).map((f) => f.id!);
}

async function checkQueries(store: SqliteStore, all: FindingJson[], what: string) {
  for (const [name, q] of Object.entries(QUERIES)) {
    for (const limit of [1, 40, 1000, 5000]) {
      const want = expected(all, q, limit);
      const got = (await store.query({ ...q, limit })).map((f) => f.id!);
      assert.deepEqual(got, want, `${what}: ${name}, limit ${limit}`);
    }
    if (!EMPTY.has(name)) assert.ok(expected(all, q, N).length > 0, `${name} matches something`);
  }
}

/** Turns a database into one written before the origins table (the previous schema). */
function asOlderDatabase(path: string) {
  const db = new DatabaseSync(path);
  db.exec(`DROP INDEX findings_origin; DROP INDEX findings_time_origin; ALTER TABLE findings DROP COLUMN origin; DROP TABLE origins;
    CREATE INDEX findings_time ON findings (time, id); CREATE INDEX findings_container_name ON findings (container_name, time);
    CREATE INDEX findings_image ON findings (image, time); CREATE TABLE containers (id TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (id, name)) WITHOUT ROWID;`);
  db.close();
}

const objects = (path: string) => {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").all() as Array<{ name: string }>).map((r) => r.name).sort();
  } finally {
    db.close();
  }
};

test('every filter gives what a scan gives, in time and id order, through either index; an older database reads the same and is migrated', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-origins-'));
  try {
    const path = join(dir, 'f.db');
    const all = findings();
    let store = SqliteStore.open(path);
    // in groups, as the ingest stores them, in an order that is not time order
    for (let i = 0; i < N; i += 500) store.insertSync(all.slice(i, i + 500).reverse());
    assert.equal(await store.count(), N);
    const db = new DatabaseSync(path, { readOnly: true });
    const origins = Number((db.prepare('SELECT count(*) AS n FROM origins').get() as { n: number }).n);
    const distinct = new Set(all.map((f) => [f.container!.id, f.container!.name, f.container!.image, f.kubernetes!.namespace, f.host!.hostname, f.process!.executable!.sha256].join('/'))).size;
    assert.equal(origins, distinct, 'one origin per distinct tuple');
    db.close();
    // (at limit 40 a namespace, 1/20 of the table, reads (origin, time); the
    // namespace glob, over half of it, reads (time, origin))
    await checkQueries(store, all, 'new database');
    await store.close();

    asOlderDatabase(path);
    const before = objects(path);
    assert.ok(before.includes('findings_container_name') && !before.includes('origins'));
    store = SqliteStore.open(path, { readOnly: true });
    await checkQueries(store, all, 'older database, read-only');
    await store.close();
    assert.deepEqual(objects(path), before, 'a read-only open changes nothing');

    store = SqliteStore.open(path);
    await checkQueries(store, all, 'older database, migrated');
    // and it keeps storing: new findings get origins too
    const more = findings().map((f, i) => ({ ...f, id: `more-${i}`, time: new Date(T0 + 10_000_000 + i).toISOString() }));
    store.insertSync(more.slice(0, 100));
    const got = await store.query({ container: sample.container!.name!, since: new Date(T0 + 10_000_000).toISOString() });
    assert.deepEqual(got.map((f) => f.id), expected(more.slice(0, 100), { container: sample.container!.name! }, 1000));
    await store.close();
    const after = objects(path);
    for (const gone of ['findings_container_name', 'findings_image', 'findings_time', 'containers']) assert.ok(!after.includes(gone), `${gone} dropped`);
    for (const made of ['origins', 'findings_origin', 'findings_time_origin']) assert.ok(after.includes(made), `${made} created`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
