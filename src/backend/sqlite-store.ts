// SQLite store (node:sqlite). Synchronous underneath: the backend runs the
// writing side in its ingest worker thread, so the gRPC event loop never
// waits on the disk. Prepared statements, one transaction per batch.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { FindingJson } from '#gen/finding-json.js';
import { COLUMNS, SUMMARY_COLUMNS, type SummaryKey } from './columns.js';
import { BodyWriter, jsonText, rowSourceOf, storeRowOf, type RowSource, type StoreRow } from './checked-rows.js';
import { countNew, fleetFieldsOf, fleetInputOf, type FleetFields, type FleetKey, type FleetState, type Sighting } from './fleet.js';
import { filterConditions, ORIGIN_COLUMNS, type Dialect } from './origins.js';
import { WAL_BOUND_BYTES, WalCheckpointer } from './wal-checkpointer.js';
import { applySummary, clampLimit, type FindingQuery, type FindingStore, type InsertResult, type OpenOptions, type SummaryRow } from './store.js';

const sqliteType = (t: string) => (t === 'INTEGER' ? 'INTEGER' : 'TEXT');

const ORIGINS_TABLE = `CREATE TABLE IF NOT EXISTS origins (key INTEGER PRIMARY KEY, ${ORIGIN_COLUMNS.map((c) => `${c} TEXT NOT NULL`).join(', ')}, UNIQUE (${ORIGIN_COLUMNS.join(', ')}));`;

function schema(): string {
  const cols = COLUMNS.map((c) => `${c.name} ${sqliteType(c.pgType)} NOT NULL${c.name === 'id' ? ' PRIMARY KEY' : ''}`);
  return `
CREATE TABLE IF NOT EXISTS findings (${cols.join(', ')}, received_at TEXT NOT NULL, body TEXT NOT NULL, origin INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS fleet_sightings (sha256 TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (sha256, kind, value)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fleet_binaries (sha256 TEXT PRIMARY KEY, first_seen TEXT NOT NULL, containers INTEGER NOT NULL, images INTEGER NOT NULL, hosts INTEGER NOT NULL);
${ORIGINS_TABLE}
CREATE TABLE IF NOT EXISTS summaries (id TEXT PRIMARY KEY, fold_of TEXT NOT NULL, received_at TEXT NOT NULL);`;
}

// (made after any migration of the origins table: an older one lacks columns)
const originIndexes = () => ORIGIN_COLUMNS.slice(1).map((c) => `CREATE INDEX IF NOT EXISTS origins_${c} ON origins (${c});`).join('\n');

// Where a finding came from (see origins.ts) is one small integer, the key of
// that tuple in the origins table, and one index on (origin, time) serves the
// filters on all eight of its columns: a filter finds its keys in the small
// table first. Every index costs a B-tree insert per finding and, at each
// commit, a dirty page per distinct value (thousands of containers and
// binaries in a fleet): six text indexes were more than half of the store's
// time, and the last two, the signature's and the action's, ~6-11% of its
// CPU per finding.
const KEYED = new Set<string>(ORIGIN_COLUMNS);
const SQLITE_SQL: Dialect = { arg: (list, v) => (list.push(v), '?'), likeEscape: " ESCAPE '\\'", idPrefixEnd: (p) => p + '\u{10FFFF}' };

function indexes(): string {
  return [
    // (time, origin): a filter that matches much of the table reads it in time order, without the rows
    'CREATE INDEX IF NOT EXISTS findings_time_origin ON findings (time, origin);',
    'DROP INDEX IF EXISTS findings_time;',
    'CREATE INDEX IF NOT EXISTS findings_origin ON findings (origin, time);',
    ...ORIGIN_COLUMNS.map((c) => `DROP INDEX IF EXISTS findings_${c};`),
    ...COLUMNS.filter((c) => c.indexed && !KEYED.has(c.name)).map((c) => `CREATE INDEX IF NOT EXISTS findings_${c.name} ON findings (${c.name}, time);`),
  ].join('\n');
}

/** A database from before the origins table: every finding gets its origin (on the first writable open). */
const FILL_ORIGINS = `
ALTER TABLE findings ADD COLUMN origin INTEGER NOT NULL DEFAULT 0;
INSERT OR IGNORE INTO origins (${ORIGIN_COLUMNS.join(', ')}) SELECT DISTINCT ${ORIGIN_COLUMNS.join(', ')} FROM findings;
UPDATE findings SET origin = (SELECT key FROM origins k WHERE ${ORIGIN_COLUMNS.map((c) => `k.${c} = findings.${c}`).join(' AND ')});
DROP TABLE IF EXISTS containers;`;

/**
 * A database whose origins table lacks some of the columns (the previous
 * version's had six: no signature or action): every finding gets the key of
 * its whole tuple, read from its own columns (on the first writable open).
 * An UPDATE rewrites the ~2 KB row, so only some findings move: of an old
 * key's findings, the commonest combination of the new columns keeps the key,
 * and each other combination gets a new one. Keys no finding holds go. The
 * findings are read twice: all in table order (the index on the origin
 * would read them in random order), then those of the keys that split.
 */
function widenOrigins(had: ReadonlySet<string>): string {
  const added = ORIGIN_COLUMNS.filter((c) => !had.has(c));
  const list = (cols: readonly string[], prefix = '') => cols.map((c) => prefix + c).join(', ');
  const tuple = ORIGIN_COLUMNS.map((c) => (had.has(c) ? `o.${c}` : `p.${c}`));
  const parts = 'temp.origin_parts p JOIN origins_before o ON o.key = p.old';
  return `
ALTER TABLE origins RENAME TO origins_before;
${ORIGINS_TABLE}
CREATE TABLE temp.origin_parts AS
  SELECT origin AS old, ${list(added)}, row_number() OVER (PARTITION BY origin ORDER BY count(*) DESC, ${list(added)}) AS rank
  FROM findings NOT INDEXED GROUP BY origin, ${list(added)};
INSERT INTO origins (key, ${list(ORIGIN_COLUMNS)}) SELECT o.key, ${tuple.join(', ')} FROM ${parts} WHERE p.rank = 1;
INSERT INTO origins (${list(ORIGIN_COLUMNS)}) SELECT ${tuple.join(', ')} FROM ${parts} WHERE p.rank > 1 ORDER BY p.old, p.rank;
CREATE TABLE temp.origin_moves (old INTEGER NOT NULL, ${list(added)}, key INTEGER NOT NULL, PRIMARY KEY (old, ${list(added)}));
INSERT INTO temp.origin_moves SELECT p.old, ${list(added, 'p.')}, n.key FROM ${parts}
  JOIN origins n ON ${ORIGIN_COLUMNS.map((c, i) => `n.${c} = ${tuple[i]}`).join(' AND ')} WHERE p.rank > 1;
UPDATE findings SET origin = m.key FROM temp.origin_moves m
  WHERE findings.origin IN (SELECT old FROM temp.origin_moves) AND m.old = findings.origin AND ${added.map((c) => `m.${c} = findings.${c}`).join(' AND ')};
DROP TABLE origins_before;
DROP TABLE temp.origin_parts;
DROP TABLE temp.origin_moves;`;
}

/** Runs a script in one transaction. */
function inTransaction(db: DatabaseSync, sql: string): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(sql);
    db.exec('COMMIT');
  } catch (err) {
    db.exec('ROLLBACK');
    throw err;
  }
}

// Sightings are never deleted, so the sightings of a finding (its sha256 in
// its container, image and host) this process has stored need no INSERT
// again: in a fleet at rest nearly every tuple is known. One key per tuple,
// ~200 bytes: at most KNOWN_TUPLES_MAX, as PostgreSQL's store keeps.
const KNOWN_TUPLES_MAX = 100_000;
/** Fleet counters and origin keys remembered, at most. */
const KNOWN_MAX = 500_000;
const ID_AT = COLUMNS.findIndex((c) => c.name === 'id');
const ORIGIN_AT = ORIGIN_COLUMNS.map((name) => COLUMNS.findIndex((c) => c.name === name));

interface Where {
  sql: string;
  args: string[];
  /** Conditions on columns other than time and the origin. */
  others: number;
  /** The conditions on the origins table, if any. */
  origins?: { sql: string; args: string[] };
}

const columnsOf = (db: DatabaseSync, table: string) => new Set((db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).map((r) => r.name));
/** The origin's columns that the origins table holds (none: a database from before the table). */
const originColumnsOf = (db: DatabaseSync): ReadonlySet<string> => new Set(ORIGIN_COLUMNS.filter((c) => columnsOf(db, 'origins').has(c)));

export class SqliteStore implements FindingStore {
  /** Findings' sighting tuples (fleetTupleKey) committed: their three sightings need no INSERT again. */
  private readonly knownTuples = new Set<string>();
  /** Counters of fleet_binaries as last committed by this connection (see transaction()). */
  private readonly binaries = new Map<string, Omit<FleetState, 'created'>>();
  private dataVersion = -1;
  /** What the open transaction wrote to the fleet tables; remembered once it commits. */
  private pending?: { tuples: Set<string>; binaries: Map<string, Omit<FleetState, 'created'>>; origins: Map<string, number> };
  private statements?: {
    finding: StatementSync; sighting: StatementSync; keyOf: StatementSync; newKey: StatementSync; binary: StatementSync; created: StatementSync;
    summary: StatementSync; firstOf: StatementSync; update: StatementSync; dataVersion: StatementSync;
  };

  private readonly bodies = new BodyWriter();
  /** Keys of origin tuples, as committed (a key is never deleted or changed). */
  private readonly originKeys = new Map<string, number>();
  /**
   * The origin's columns that the origins table holds: all, except in an
   * older database opened read-only, where filters on the others read the
   * findings' own columns (none: a database from before the table).
   */
  private readonly originColumns: ReadonlySet<string>;
  private checkpointer?: WalCheckpointer;

  private constructor(private readonly db: DatabaseSync) {
    this.originColumns = originColumnsOf(db);
  }

  static open(path: string, opts: OpenOptions = {}): SqliteStore {
    if (opts.readOnly) {
      if (path !== ':memory:' && !existsSync(path)) throw new Error(`no database at ${path}`);
      const db = new DatabaseSync(path, { readOnly: true });
      db.exec('PRAGMA busy_timeout = 5000;');
      return new SqliteStore(db);
    }
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const db = new DatabaseSync(path);
    // 16 KiB pages (for a new file; an existing one keeps its size): a row
    // with its JSON body is ~2.2 KB, so 4 KiB pages held one row each, and a
    // commit writes (and syscalls) per page. The cache is 32 MiB: with times
    // that grow, the pages a batch writes are the right edges of the indexes.
    db.exec('PRAGMA page_size = 16384');
    // synchronous = FULL: a commit is on disk (the WAL fsynced) before its
    // requests are answered, so a power loss cannot take findings that were
    // acknowledged (NORMAL could lose the last commits). One fsync per group
    // of requests costs little. The WAL is checkpointed every 16,384 pages
    // (256 MiB), not every 1,000: a group writes thousands of pages, and a
    // page that several groups rewrote is copied to the database once. (The
    // backend's store thread checkpoints from another thread instead: see
    // checkpointInBackground.)
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 16384;');
    db.exec(schema());
    // databases from before a column existed get it (and its index)
    const have = columnsOf(db, 'findings');
    for (const c of COLUMNS) if (!have.has(c.name)) db.exec(`ALTER TABLE findings ADD COLUMN ${c.name} ${sqliteType(c.pgType)} NOT NULL DEFAULT '${c.missing ?? ''}'`);
    const origins = originColumnsOf(db);
    if (!have.has('origin')) inTransaction(db, FILL_ORIGINS);
    else if (origins.size < ORIGIN_COLUMNS.length) inTransaction(db, widenOrigins(origins));
    db.exec(originIndexes());
    db.exec(indexes());
    return new SqliteStore(db);
  }

  private prepared() {
    if (this.statements) return this.statements;
    const names = [...COLUMNS.map((c) => c.name), 'received_at', 'body', 'origin'];
    return (this.statements = {
      // the body may come as UTF-8 bytes (see BodyWriter): stored as the text they are
      finding: this.db.prepare(`INSERT INTO findings (${names.join(', ')}) VALUES (${names.map((n) => (n === 'body' ? 'CAST(? AS TEXT)' : '?')).join(', ')}) ON CONFLICT (id) DO NOTHING`),
      keyOf: this.db.prepare(`SELECT key FROM origins WHERE ${ORIGIN_COLUMNS.map((c) => `${c} = ?`).join(' AND ')}`),
      newKey: this.db.prepare(`INSERT INTO origins (${ORIGIN_COLUMNS.join(', ')}) VALUES (${ORIGIN_COLUMNS.map(() => '?').join(', ')})`),
      sighting: this.db.prepare('INSERT INTO fleet_sightings (sha256, kind, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING'),
      created: this.db.prepare('SELECT 1 AS x FROM fleet_binaries WHERE sha256 = ?'),
      summary: this.db.prepare('INSERT INTO summaries (id, fold_of, received_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING'),
      firstOf: this.db.prepare('SELECT body FROM findings WHERE id = ?'),
      update: this.db.prepare('UPDATE findings SET body = ? WHERE id = ?'),
      dataVersion: this.db.prepare('PRAGMA data_version'),
      binary: this.db.prepare(
        `INSERT INTO fleet_binaries AS b (sha256, first_seen, containers, images, hosts) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (sha256) DO UPDATE SET first_seen = min(b.first_seen, excluded.first_seen),
           containers = b.containers + excluded.containers, images = b.images + excluded.images, hosts = b.hosts + excluded.hosts
         RETURNING first_seen, containers, images, hosts`,
      ),
    });
  }

  /**
   * Runs fn in one transaction. The ingest worker stores every request that
   * is waiting in one, because a commit costs the pages it writes (the
   * table's and every index's), and the requests of a group share most of
   * the index pages: per finding, one commit for 16 requests is several
   * times cheaper than one each.
   */
  transaction<T>(fn: () => T): T {
    if (this.pending) return fn();
    const pending = { tuples: new Set<string>(), binaries: new Map<string, Omit<FleetState, 'created'>>(), origins: new Map<string, number>() };
    this.checkpointer?.beforeWrite();
    this.db.exec('BEGIN IMMEDIATE');
    // data_version moves when another connection committed: then the
    // counters remembered here may be stale (sightings are never deleted, so
    // the known ones stay true)
    const version = Number((this.prepared().dataVersion.get() as { data_version: number }).data_version);
    if (version !== this.dataVersion) (this.binaries.clear(), (this.dataVersion = version));
    this.pending = pending;
    try {
      const out = fn();
      this.db.exec('COMMIT');
      this.checkpointer?.committed();
      // remembered only once committed: a rolled-back write never happened
      if (this.knownTuples.size + pending.tuples.size > KNOWN_TUPLES_MAX) this.knownTuples.clear();
      for (const key of pending.tuples) this.knownTuples.add(key);
      if (this.binaries.size + pending.binaries.size > KNOWN_MAX) this.binaries.clear();
      for (const [sha, b] of pending.binaries) this.binaries.set(sha, b);
      if (this.originKeys.size + pending.origins.size > KNOWN_MAX) this.originKeys.clear();
      for (const [tuple, key] of pending.origins) this.originKeys.set(tuple, key);
      return out;
    } catch (err) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      throw err;
    } finally {
      this.pending = undefined;
    }
  }

  /** Synchronous insert (the worker calls this), in its own transaction or the caller's. */
  insertSync(findings: FindingJson[]): InsertResult {
    return this.insertRowsSync(rowSourceOf(findings.map(storeRowOf)));
  }

  /** Rows of checked findings (see checked-rows.ts), in its own transaction or the caller's. */
  insertRowsSync(rows: RowSource): InsertResult {
    return this.transaction(() => {
      const st = this.prepared();
      const fresh = this.pending!;
      const now = new Date().toISOString();
      // Only the summaries' places are kept, not the rows' heads: kept while
      // the rows are written, a request's heads outlived the store thread's
      // young generation, ~1.4 KB per finding promoted to the old space.
      const summaries: Array<{ at: number; foldOf: string }> = [];
      for (let i = 0; i < rows.length; i++) {
        const foldOf = rows.head(i).foldOf;
        if (foldOf) summaries.push({ at: i, foldOf });
      }
      let stored = 0;
      // In order: a dedup summary (foldOf) updates its first finding, which may
      // be earlier in this batch, so the findings before it are written first.
      let plain = 0; // rows plain..i-1 are not written yet
      for (const { at: i, foldOf } of summaries) {
        stored += this.insertPlain(rows, plain, i, now, fresh);
        plain = i;
        const first = st.firstOf.get(foldOf) as { body: string } | undefined;
        if (!first) continue; // its first never arrived: stored as a finding of its own
        plain = i + 1;
        const r = rows.row(i);
        if (Number(st.summary.run(r.values[ID_AT] as string, foldOf, now).changes) === 0) continue;
        st.update.run(JSON.stringify(applySummary(JSON.parse(first.body) as FindingJson, JSON.parse(jsonText(r)) as FindingJson)), foldOf);
        stored++;
      }
      stored += this.insertPlain(rows, plain, rows.length, now, fresh);
      return { stored, duplicates: rows.length - stored };
    });
  }

  /** Fleet tables, then rows from..to-1 of the findings; inside the caller's transaction. */
  private insertPlain(rows: RowSource, from: number, to: number, now: string, pending: NonNullable<SqliteStore['pending']>): number {
    if (from >= to) return 0;
    const fleet = this.fleetFields(rows, from, to, pending);
    const st = this.prepared();
    let stored = 0;
    for (let i = from; i < to; i++) {
      const r = rows.row(i); // one row's strings at a time: they die young
      stored += Number(st.finding.run(...r.values, now, this.bodies.body(r, fleet[i - from]!), this.originOf(r.values, pending)).changes);
    }
    return stored;
  }

  /** The fleet tables for rows from..to-1, and each row's fleet fields (their heads die here, before the rows are written). */
  private fleetFields(rows: RowSource, from: number, to: number, pending: NonNullable<SqliteStore['pending']>): Array<FleetFields | null> {
    const st = this.prepared();
    const keys = Array.from({ length: to - from }, (_, i) => rows.head(from + i).fleet);
    const input = this.fleetInput(keys, pending.tuples);
    const inserted = input.fresh.filter((s) => Number(st.sighting.run(s.sha256, s.kind, s.value).changes) > 0);
    const added = countNew(inserted);
    const state = new Map<string, FleetState>();
    for (const b of input.binaries) {
      const n = added.get(b.sha256);
      // a binary the fleet knows, with nothing new: its counters as they are
      const known = pending.binaries.get(b.sha256) ?? this.binaries.get(b.sha256);
      if (known && !n && known.firstSeen <= b.firstSeen) {
        state.set(b.sha256, { ...known, created: false });
        continue;
      }
      const created = !known && !st.created.get(b.sha256);
      const r = st.binary.get(b.sha256, b.firstSeen, n?.c ?? 0, n?.i ?? 0, n?.h ?? 0) as { first_seen: string; containers: number; images: number; hosts: number };
      const counters = { firstSeen: r.first_seen, containers: r.containers, images: r.images, hosts: r.hosts };
      pending.binaries.set(b.sha256, counters);
      state.set(b.sha256, { ...counters, created });
    }
    return fleetFieldsOf(keys, state);
  }

  /**
   * fleetInputOf for one writer: the sightings of tuples neither committed
   * nor written earlier in this transaction (added to `pending`).
   */
  private fleetInput(keys: Array<FleetKey | null>, pending: Set<string>): { binaries: Array<{ sha256: string; firstSeen: string }>; fresh: Sighting[] } {
    const input = fleetInputOf(keys, { has: (tuple) => this.knownTuples.has(tuple) || pending.has(tuple) });
    for (const tuple of input.tuples) pending.add(tuple);
    return { binaries: input.binaries, fresh: input.sightings };
  }

  /** The key of a row's origin tuple, created in the open transaction when new. */
  private originOf(values: StoreRow['values'], pending: NonNullable<SqliteStore['pending']>): number {
    const tuple = ORIGIN_AT.map((i) => values[i] as string);
    const text = tuple.join('\u0000');
    let key = this.originKeys.get(text) ?? pending.origins.get(text);
    if (key !== undefined) return key;
    const st = this.prepared();
    const got = st.keyOf.get(...tuple) as { key: number } | undefined;
    key = got ? Number(got.key) : Number(st.newKey.run(...tuple).lastInsertRowid);
    pending.origins.set(text, key);
    return key;
  }

  async insert(findings: FindingJson[]): Promise<InsertResult> {
    return this.insertSync(findings);
  }

  private where(q: FindingQuery): Where {
    const c = filterConditions(q, (col) => this.originColumns.has(col), SQLITE_SQL);
    const { where, args } = c.finding;
    const others = where.length - (q.since ? 1 : 0) - (q.until ? 1 : 0);
    const tuple = c.origin;
    if (tuple.where.length) (where.push(`origin IN (SELECT key FROM origins WHERE ${tuple.where.join(' AND ')})`), args.push(...tuple.args));
    return {
      sql: where.length ? 'WHERE ' + where.join(' AND ') : '', args, others,
      ...(tuple.where.length ? { origins: { sql: tuple.where.join(' AND '), args: tuple.args } } : {}),
    };
  }

  /**
   * The index that finds the first findings of an origin filter soonest:
   * (origin, time) reads every matching entry and sorts them, (time, origin)
   * reads in time order until enough match. Which is cheaper depends on the
   * share of the table that matches, estimated by the share of the origins.
   */
  private originIndex(w: Where, limit: number): string | undefined {
    if (!w.origins || w.others) return undefined; // another column's index may serve better; SQLite picks
    const n = (sql: string, args: string[] = []) => Number((this.db.prepare(sql).get(...args) as { n: number | null }).n ?? 0);
    const all = n('SELECT max(key) AS n FROM origins');
    const rows = n('SELECT max(rowid) AS n FROM findings');
    const share = n(`SELECT count(*) AS n FROM origins WHERE ${w.origins.sql}`, w.origins.args) / Math.max(1, all);
    // rows read: share × rows through (origin, time), limit / share through (time, origin)
    return share * share * rows > limit ? 'findings_time_origin' : 'findings_origin';
  }

  async query(q: FindingQuery): Promise<FindingJson[]> {
    const w = this.where(q);
    const limit = clampLimit(q.limit);
    let sql = w.sql;
    const args = [...w.args];
    const keyed = this.originColumns.size > 0;
    const index = keyed ? this.originIndex(w, limit) : undefined;
    const from = `findings${index ? ` INDEXED BY ${index}` : ''}`;
    if (keyed) {
      // The time of the limit-th match first, from the index alone; then only
      // findings up to it are read (a body is ~2 KB: reading and sorting every
      // match of a broad filter at a million rows took ~1 s).
      const last = this.db.prepare(`SELECT time FROM ${from} ${sql} ORDER BY time LIMIT 1 OFFSET ${limit - 1}`).get(...args) as { time: string } | undefined;
      if (last) (sql += `${sql ? ' AND' : 'WHERE'} time <= ?`, args.push(last.time));
    }
    const rows = this.db.prepare(`SELECT body FROM ${from} ${sql} ORDER BY time, id LIMIT ${limit}`).all(...args) as Array<{ body: string }>;
    return rows.map((r) => JSON.parse(r.body) as FindingJson);
  }

  async summary(by: SummaryKey, q: FindingQuery): Promise<SummaryRow[]> {
    const col = SUMMARY_COLUMNS[by];
    const w = this.where(q);
    const rows = this.db
      .prepare(
        `SELECT ${col} AS key, count(*) AS findings, min(time) AS first_seen, max(time) AS last_seen,
           count(DISTINCT container_id) AS containers, count(DISTINCT hostname) AS hosts
         FROM findings ${w.sql} GROUP BY ${col} ORDER BY findings DESC, key LIMIT ${clampLimit(q.limit)}`,
      )
      .all(...w.args) as Array<{ key: string; findings: number; first_seen: string; last_seen: string; containers: number; hosts: number }>;
    return rows.map((r) => ({ key: r.key, findings: Number(r.findings), firstSeen: r.first_seen, lastSeen: r.last_seen, containers: Number(r.containers), hosts: Number(r.hosts) }));
  }

  async count(): Promise<number> {
    return Number((this.db.prepare('SELECT count(*) AS n FROM findings').get() as { n: number }).n);
  }

  /**
   * The backend's store thread: WAL checkpoints run on a thread of their own
   * (wal-checkpointer.ts) instead of inside a COMMIT. Not for the sensor's
   * embedded backend (a thread's memory for a trickle of findings).
   */
  async checkpointInBackground(walBoundBytes = WAL_BOUND_BYTES): Promise<void> {
    const file = (this.db.prepare('PRAGMA database_list').all() as Array<{ name: string; file: string }>).find((d) => d.name === 'main')?.file;
    if (!file || this.checkpointer) return; // in memory
    this.checkpointer = await WalCheckpointer.start(file, walBoundBytes);
    this.db.exec('PRAGMA wal_autocheckpoint = 0');
  }

  /** The checkpoint thread ends first, with a last checkpoint that empties the WAL (see wal-checkpoint-thread.ts). */
  async close(): Promise<void> {
    await this.checkpointer?.stop();
    this.checkpointer = undefined;
    if (this.db.isOpen) this.db.close();
  }
}
