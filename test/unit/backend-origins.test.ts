// SQLite filters through the origins table: a finding's container, image,
// namespace, host, sha256, signature and action are one key, and a filter
// finds its keys first, then the findings up to the time of the limit-th
// match. Every filter must give exactly what a plain scan gives (same
// findings, same order, ties in time broken by id), whichever index the store
// picks, and a database from before the table, or of the previous version
// (no signature or action in it), must read the same, read-only and once
// migrated.
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import type { FindingJson } from '#gen/finding-json.js';
import { ORIGIN_COLUMNS } from '../../src/backend/origins.js';
import { SqliteStore } from '../../src/backend/sqlite-store.js';
import type { FindingQuery } from '../../src/backend/store.js';
import { checkFinding } from '../../src/backend/validate.js';
import { realisticFinding } from '../helpers/load.js';
import { withSqliteFile } from '../helpers/sqlite-file.js';

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

const EMPTY = new Set(['literal % is no wildcard', 'no such container', 'no such signature']);

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

async function checkQueries(store: SqliteStore, all: FindingJson[], what: string, queries = QUERIES) {
  for (const [name, q] of Object.entries(queries)) {
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

function read<T>(path: string, fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}
const objects = (path: string) => read(path, (db) => (db.prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").all() as Array<{ name: string }>).map((r) => r.name).sort());
const originColumns = (path: string) => read(path, (db) => (db.prepare('PRAGMA table_info(origins)').all() as Array<{ name: string }>).map((r) => r.name).filter((n) => n !== 'key'));

test('every filter gives what a scan gives, in time and id order, through either index; an older database reads the same and is migrated', withSqliteFile('origins', async (path) => {
  const all = findings();
  let store = SqliteStore.open(path);
  // in groups, as the ingest stores them, in an order that is not time order
  for (let i = 0; i < N; i += 500) store.insertSync(all.slice(i, i + 500).reverse());
  assert.equal(await store.count(), N);
  const db = new DatabaseSync(path, { readOnly: true });
  const origins = Number((db.prepare('SELECT count(*) AS n FROM origins').get() as { n: number }).n);
  const distinct = new Set(all.map((f) => [f.container!.id, f.container!.name, f.container!.image, f.kubernetes!.namespace, f.host!.hostname, f.process!.executable!.sha256, f.signature!.id, f.action ?? 'alert'].join('/'))).size;
  assert.equal(origins, distinct, 'one origin per distinct tuple');
  db.close();
  // (at limit 40 a namespace, 1/20 of the table, reads (origin, time); the
  // namespace glob, over half of it, reads (time, origin))
  await checkQueries(store, all, 'new database');
  await store.close();
  const fresh = objects(path);
  for (const gone of ['findings_signature_id', 'findings_action']) assert.ok(!fresh.includes(gone), `a new database has no ${gone}`);
  assert.deepEqual(originColumns(path), ORIGIN_COLUMNS);

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
  assert.deepEqual(originColumns(path), ORIGIN_COLUMNS);
}));

// The previous version's origins table: no signature or action, which each
// had an index (signature_id, time) and (action, time) on the findings.
const PREVIOUS_ORIGIN_COLUMNS = ['container_id', 'container_name', 'image', 'namespace', 'hostname', 'sha256'];

/** Turns a database into one the previous version wrote: a six-column origins table, and the two indexes. */
function asPreviousDatabase(path: string) {
  const cols = PREVIOUS_ORIGIN_COLUMNS.join(', ');
  const db = new DatabaseSync(path);
  db.exec(`DROP TABLE origins;
    CREATE TABLE origins (key INTEGER PRIMARY KEY, ${PREVIOUS_ORIGIN_COLUMNS.map((c) => `${c} TEXT NOT NULL`).join(', ')}, UNIQUE (${cols}));
    ${PREVIOUS_ORIGIN_COLUMNS.slice(1).map((c) => `CREATE INDEX origins_${c} ON origins (${c});`).join('\n')}
    INSERT INTO origins (${cols}) SELECT DISTINCT ${cols} FROM findings ORDER BY ${cols};
    UPDATE findings SET origin = (SELECT key FROM origins k WHERE ${PREVIOUS_ORIGIN_COLUMNS.map((c) => `k.${c} = findings.${c}`).join(' AND ')});
    CREATE INDEX findings_signature_id ON findings (signature_id, time);
    CREATE INDEX findings_action ON findings (action, time);`);
  db.close();
}

const SIGNATURES = ['drift.new_executable', 'drift.other', 'drift.third'];

/** Findings of four origins (as the previous version keyed them), each with three signatures and all actions, in unequal shares. */
function mixedFindings(n: number, tag: string, from = 0): FindingJson[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    const f = realisticFinding(i % 4, `${tag}-${i}`);
    f.time = new Date(T0 + i * 1000).toISOString();
    f.signature!.id = SIGNATURES[[0, 0, 0, 1, 1, 2][(i * 5) % 6]!]!;
    f.action = ['alert', 'alert', 'prevented', 'would_prevent', 'alert'][i % 5];
    if (i % 7 === 0) delete f.action; // a sensor from before prevention: an alert
    const c = checkFinding(f, i);
    assert.ok(c.ok);
    return c.finding;
  });
}

const mixed = realisticFinding(1);
const MIXED_QUERIES: Record<string, FindingQuery> = {
  signature: { signature: 'drift.other' },
  'signature glob': { signature: 'drift.t*', glob: true },
  action: { action: 'prevented' },
  'action alert': { action: 'alert' },
  'signature and action': { signature: 'drift.third', action: 'would_prevent' },
  namespace: { namespace: mixed.kubernetes!.namespace! },
  'namespace and signature': { namespace: mixed.kubernetes!.namespace!, signature: 'drift.other' },
  'host and action': { host: mixed.host!.hostname!, action: 'prevented' },
  'container, signature and since': { container: mixed.container!.name!, signature: 'drift.new_executable', since: new Date(T0 + 300_000).toISOString() },
  'no such signature': { signature: 'drift.none' },
  everything: {},
};

test('a database of the previous version (origins without signature and action) reads right read-only, and is migrated on the first writable open', withSqliteFile('origins', async (path) => {
  const all = mixedFindings(600, 'mixed');
  let store = SqliteStore.open(path);
  store.insertSync(all);
  await store.close();
  asPreviousDatabase(path);
  const before = objects(path);
  assert.deepEqual(originColumns(path), PREVIOUS_ORIGIN_COLUMNS);
  for (const made of ['findings_signature_id', 'findings_action']) assert.ok(before.includes(made));
  const keysBefore = read(path, (db) => new Map((db.prepare('SELECT id, origin FROM findings').all() as Array<{ id: string; origin: number }>).map((r) => [r.id, Number(r.origin)])));
  assert.equal(new Set(keysBefore.values()).size, 4, 'four origins of the previous shape');

  store = SqliteStore.open(path, { readOnly: true });
  await checkQueries(store, all, 'previous database, read-only', MIXED_QUERIES);
  await store.close();
  assert.deepEqual(objects(path), before, 'a read-only open changes nothing');

  store = SqliteStore.open(path);
  await checkQueries(store, all, 'previous database, migrated', MIXED_QUERIES);
  assert.equal(await store.count(), all.length);
  const bySignature = new Map((await store.summary('signature', {})).map((r) => [r.key, r.findings]));
  assert.deepEqual(bySignature, new Map(SIGNATURES.map((s) => [s, all.filter((f) => f.signature!.id === s).length])));
  // stored after the migration: known tuples and a new one (a signature an origin never had)
  const more = mixedFindings(60, 'more', 600);
  more[0]!.signature!.id = 'drift.later';
  store.insertSync(more);
  await checkQueries(store, [...all, ...more], 'previous database, migrated, then more', { ...MIXED_QUERIES, later: { signature: 'drift.later' } });
  await store.close();

  assert.deepEqual(originColumns(path), ORIGIN_COLUMNS);
  const after = objects(path);
  for (const gone of ['findings_signature_id', 'findings_action', 'origins_before']) assert.ok(!after.includes(gone), `${gone} dropped`);
  for (const made of ORIGIN_COLUMNS.slice(1).map((c) => `origins_${c}`)) assert.ok(after.includes(made), `${made} created`);
  read(path, (db) => {
    const wrong = db.prepare(`SELECT count(*) AS n FROM findings f JOIN origins o ON o.key = f.origin WHERE ${ORIGIN_COLUMNS.map((c) => `o.${c} IS NOT f.${c}`).join(' OR ')}`).get() as { n: number };
    assert.equal(Number(wrong.n), 0, "every finding's key is its own tuple");
    const tuples = db.prepare(`SELECT count(*) AS n FROM (SELECT DISTINCT ${ORIGIN_COLUMNS.join(', ')} FROM findings)`).get() as { n: number };
    const origins = db.prepare('SELECT count(*) AS n FROM origins').get() as { n: number };
    assert.equal(Number(origins.n), Number(tuples.n), 'one origin per tuple');
    // of each old key's findings, the commonest (signature, action) kept the key: only the others were rewritten
    const moved = [...keysBefore].filter(([id, key]) => Number((db.prepare('SELECT origin FROM findings WHERE id = ?').get(id) as { origin: number }).origin) !== key).length;
    const kept = [...new Set(keysBefore.values())].map((key) => {
      const counts = new Map<string, number>();
      for (const f of all.filter((x) => keysBefore.get(x.id!) === key)) {
        const pair = `${f.signature!.id}/${f.action ?? 'alert'}`;
        counts.set(pair, (counts.get(pair) ?? 0) + 1);
      }
      return Math.max(...counts.values());
    });
    assert.equal(moved, all.length - kept.reduce((a, b) => a + b, 0), 'only findings off their old key\'s commonest pair moved');
  });
}));
