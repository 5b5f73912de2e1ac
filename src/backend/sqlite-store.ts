// SQLite store (node:sqlite). Synchronous underneath: the backend runs the
// writing side in its ingest worker thread, so the gRPC event loop never
// waits on the disk. Prepared statements, one transaction per batch.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { FindingJson } from '#gen/finding-json.js';
import { COLUMNS, FILTER_COLUMNS, likePattern, SUMMARY_COLUMNS, type SummaryKey } from './columns.js';
import { bodyWithFleet, storeRowOf, type StoreRow } from './checked-rows.js';
import { countNew, fleetFieldsOf, fleetInputOf, type FleetState, type Sighting } from './fleet.js';
import { applySummary, clampLimit, type FindingQuery, type FindingStore, type InsertResult, type OpenOptions, type SummaryRow } from './store.js';

const sqliteType = (t: string) => (t === 'INTEGER' ? 'INTEGER' : 'TEXT');

function schema(): string {
  const cols = COLUMNS.map((c) => `${c.name} ${sqliteType(c.pgType)} NOT NULL${c.name === 'id' ? ' PRIMARY KEY' : ''}`);
  return `
CREATE TABLE IF NOT EXISTS findings (${cols.join(', ')}, received_at TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fleet_sightings (sha256 TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (sha256, kind, value)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fleet_binaries (sha256 TEXT PRIMARY KEY, first_seen TEXT NOT NULL, containers INTEGER NOT NULL, images INTEGER NOT NULL, hosts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS containers (id TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (id, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS summaries (id TEXT PRIMARY KEY, fold_of TEXT NOT NULL, received_at TEXT NOT NULL);`;
}

// A filter by container id finds the container's names in the small
// containers table and reads the container_name index: one index fewer on
// the findings, whose every insert costs a page per distinct container at
// each commit (there are thousands of containers in a fleet).
const UNINDEXED = new Set(['container_id']);

function indexes(): string {
  return [
    'CREATE INDEX IF NOT EXISTS findings_time ON findings (time, id);',
    'DROP INDEX IF EXISTS findings_container_id;',
    ...COLUMNS.filter((c) => c.indexed && !UNINDEXED.has(c.name)).map((c) => `CREATE INDEX IF NOT EXISTS findings_${c.name} ON findings (${c.name}, time);`),
  ].join('\n');
}

// Sightings are never deleted, so one this process has stored needs no
// INSERT again: in a fleet at rest nearly every sighting is known. (SQLite
// has one writer, this process; PostgreSQL replicas do not share memory.)
const KNOWN_SIGHTINGS_MAX = 500_000;
const ID_AT = COLUMNS.findIndex((c) => c.name === 'id');
const CONTAINER_ID_AT = COLUMNS.findIndex((c) => c.name === 'container_id');
const CONTAINER_NAME_AT = COLUMNS.findIndex((c) => c.name === 'container_name');
const sightingKey = (s: Sighting) => `${s.sha256}\u0000${s.kind}\u0000${s.value}`;

export class SqliteStore implements FindingStore {
  private readonly knownSightings = new Set<string>();
  /** Counters of fleet_binaries as last committed by this connection (see transaction()). */
  private readonly binaries = new Map<string, Omit<FleetState, 'created'>>();
  private dataVersion = -1;
  /** What the open transaction wrote to the fleet tables; remembered once it commits. */
  private pending?: { sightings: Sighting[]; binaries: Map<string, Omit<FleetState, 'created'>>; containers: Set<string> };
  private statements?: {
    finding: StatementSync; sighting: StatementSync; container: StatementSync; binary: StatementSync; created: StatementSync;
    summary: StatementSync; firstOf: StatementSync; update: StatementSync; dataVersion: StatementSync;
  };

  /** (container id, name) pairs in the containers table, as committed. */
  private readonly knownContainers = new Set<string>();
  private containersTable?: boolean;

  private constructor(private readonly db: DatabaseSync) {}

  /** A database from before the containers table (opened read-only) is filtered the old way. */
  private hasContainers(): boolean {
    return !!this.db.prepare("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'containers'").get();
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
    // page that several groups rewrote is copied to the database once.
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 16384;');
    const hadContainers = !!db.prepare("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'containers'").get();
    db.exec(schema());
    // a database from before it: the containers of the findings it holds
    if (!hadContainers) db.exec('INSERT OR IGNORE INTO containers (id, name) SELECT DISTINCT container_id, container_name FROM findings');
    // databases from before a column existed get it (and its index)
    const have = new Set((db.prepare('PRAGMA table_info(findings)').all() as Array<{ name: string }>).map((r) => r.name));
    for (const c of COLUMNS) if (!have.has(c.name)) db.exec(`ALTER TABLE findings ADD COLUMN ${c.name} ${sqliteType(c.pgType)} NOT NULL DEFAULT '${c.missing ?? ''}'`);
    db.exec(indexes());
    return new SqliteStore(db);
  }

  private prepared() {
    if (this.statements) return this.statements;
    const names = [...COLUMNS.map((c) => c.name), 'received_at', 'body'];
    return (this.statements = {
      finding: this.db.prepare(`INSERT INTO findings (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')}) ON CONFLICT (id) DO NOTHING`),
      container: this.db.prepare('INSERT INTO containers (id, name) VALUES (?, ?) ON CONFLICT DO NOTHING'),
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
    const pending = { sightings: [] as Sighting[], binaries: new Map<string, Omit<FleetState, 'created'>>(), containers: new Set<string>() };
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
      // remembered only once committed: a rolled-back write never happened
      if (this.knownSightings.size + pending.sightings.length > KNOWN_SIGHTINGS_MAX) this.knownSightings.clear();
      for (const s of pending.sightings) this.knownSightings.add(sightingKey(s));
      if (this.binaries.size + pending.binaries.size > KNOWN_SIGHTINGS_MAX) this.binaries.clear();
      for (const [sha, b] of pending.binaries) this.binaries.set(sha, b);
      if (this.knownContainers.size + pending.containers.size > KNOWN_SIGHTINGS_MAX) this.knownContainers.clear();
      for (const c of pending.containers) this.knownContainers.add(c);
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
    return this.insertRowsSync(findings.map(storeRowOf));
  }

  /** Rows of checked findings (see checked-rows.ts), in its own transaction or the caller's. */
  insertRowsSync(rows: StoreRow[]): InsertResult {
    return this.transaction(() => {
      const st = this.prepared();
      const fresh = this.pending!;
      const now = new Date().toISOString();
      let stored = 0;
      // In order: a dedup summary (foldOf) updates its first finding, which may
      // be earlier in this batch, so the findings before it are written first.
      let plain: StoreRow[] = [];
      for (const r of rows) {
        if (!r.foldOf) {
          plain.push(r);
          continue;
        }
        stored += this.insertPlain(plain, now, fresh);
        plain = [];
        const first = st.firstOf.get(r.foldOf) as { body: string } | undefined;
        if (!first) {
          plain.push(r); // its first never arrived: stored as a finding of its own
          continue;
        }
        const id = r.values[ID_AT] as string;
        if (Number(st.summary.run(id, r.foldOf, now).changes) === 0) continue;
        st.update.run(JSON.stringify(applySummary(JSON.parse(first.body) as FindingJson, JSON.parse(r.json) as FindingJson)), r.foldOf);
        stored++;
      }
      stored += this.insertPlain(plain, now, fresh);
      return { stored, duplicates: rows.length - stored };
    });
  }

  /** Fleet tables, then the findings; inside the caller's transaction. */
  private insertPlain(rows: StoreRow[], now: string, pending: NonNullable<SqliteStore['pending']>): number {
    if (!rows.length) return 0;
    const st = this.prepared();
    const keys = rows.map((r) => r.fleet);
    const input = fleetInputOf(keys);
    const fresh = input.sightings.filter((s) => !this.knownSightings.has(sightingKey(s)));
    pending.sightings.push(...fresh);
    const inserted = fresh.filter((s) => Number(st.sighting.run(s.sha256, s.kind, s.value).changes) > 0);
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
    const fleet = fleetFieldsOf(keys, state);
    for (const r of rows) {
      const id = r.values[CONTAINER_ID_AT] as string;
      const name = r.values[CONTAINER_NAME_AT] as string;
      const key = `${id}\u0000${name}`;
      if (this.knownContainers.has(key) || pending.containers.has(key)) continue;
      st.container.run(id, name);
      pending.containers.add(key);
    }
    let stored = 0;
    for (let i = 0; i < rows.length; i++) stored += Number(st.finding.run(...rows[i]!.values, now, bodyWithFleet(rows[i]!.json, fleet[i]!)).changes);
    return stored;
  }

  async insert(findings: FindingJson[]): Promise<InsertResult> {
    return this.insertSync(findings);
  }

  private where(q: FindingQuery): { sql: string; args: string[] } {
    const where: string[] = [];
    const args: string[] = [];
    const glob = !!q.glob;
    const match = (col: string, v: string) => {
      if (glob && /[*?]/.test(v)) (where.push(`${col} LIKE ? ESCAPE '\\'`), args.push(likePattern(v, true)));
      else (where.push(`${col} = ?`), args.push(v));
    };
    if (q.since) (where.push('time >= ?'), args.push(q.since));
    if (q.until) (where.push('time < ?'), args.push(q.until));
    for (const [key, col] of Object.entries(FILTER_COLUMNS)) {
      const v = q[key as keyof typeof FILTER_COLUMNS];
      if (v) match(col, v);
    }
    if (q.container) {
      if (glob && /[*?]/.test(q.container)) {
        where.push(`(container_id LIKE ? ESCAPE '\\' OR container_name LIKE ? ESCAPE '\\')`);
        args.push(likePattern(q.container, true), likePattern(q.container, true));
      } else {
        // an id prefix is a range of ids
        const prefix = /^[0-9a-f]{3,63}$/.test(q.container);
        const ids = (col: string) => (prefix ? `${col} >= ? AND ${col} < ?` : `${col} = ?`);
        const idArgs = prefix ? [q.container, q.container + '\u{10FFFF}'] : [q.container];
        where.push(`(${ids('container_id')} OR container_name = ?)`);
        args.push(...idArgs, q.container);
        if (this.containersTable ??= this.hasContainers()) {
          // the index on names serves both: an id's findings carry its names
          where.push(`container_name IN (SELECT name FROM containers WHERE ${ids('id')} UNION ALL SELECT ?)`);
          args.push(...idArgs, q.container);
        }
      }
    }
    return { sql: where.length ? 'WHERE ' + where.join(' AND ') : '', args };
  }

  async query(q: FindingQuery): Promise<FindingJson[]> {
    const w = this.where(q);
    const rows = this.db.prepare(`SELECT body FROM findings ${w.sql} ORDER BY time, id LIMIT ${clampLimit(q.limit)}`).all(...w.args) as Array<{ body: string }>;
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

  async close(): Promise<void> {
    if (this.db.isOpen) this.db.close();
  }
}
