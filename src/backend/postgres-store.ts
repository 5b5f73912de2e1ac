// PostgreSQL store. A batch is three statements in one transaction: the
// fleet sightings and counters (one statement), then every finding in one
// multi-row INSERT over unnest() arrays. Several backend replicas may share
// the database: the finding id is the primary key, so a finding sent to two
// replicas is stored once, and the fleet tables only count new sightings.
import pg from 'pg';
import type { FindingJson } from '#gen/finding-json.js';
import { COLUMNS, type Column, FILTER_COLUMNS, likePattern, rowOf, SUMMARY_COLUMNS, type SummaryKey } from './columns.js';
import { bodyJson } from './validate.js';
import { applyFleet, fleetInput, type FleetState, type Sighting } from './fleet.js';
import { applySummary, clampLimit, type FindingQuery, type FindingStore, type InsertResult, type OpenOptions, type SummaryRow } from './store.js';

// Replicas starting together must not race on CREATE (it is not atomic in PostgreSQL).
const SCHEMA_LOCK = 0x64726966;

// Text columns compare bytewise: each row goes into ten btrees, and a
// locale's collation costs more per comparison (also, LIKE 'prefix%' can use
// the index). Equality is the same in every deterministic collation.
const typeOf = (c: Column) => (c.pgType === 'TEXT' ? 'TEXT COLLATE "C"' : c.pgType);

function schema(): string[] {
  const cols = COLUMNS.map((c) => `${c.name} ${typeOf(c)} NOT NULL${c.name === 'id' ? ' PRIMARY KEY' : ''}`);
  return [
    `CREATE TABLE IF NOT EXISTS findings (${cols.join(', ')}, received_at TIMESTAMPTZ NOT NULL DEFAULT now(), body JSON NOT NULL)`,
    // databases from before a column existed get it
    ...COLUMNS.filter((c) => c.pgType === 'TEXT').map((c) => `ALTER TABLE findings ADD COLUMN IF NOT EXISTS ${c.name} ${typeOf(c)} NOT NULL DEFAULT '${c.missing ?? ''}'`),
    'CREATE INDEX IF NOT EXISTS findings_time ON findings (time, id)',
    ...COLUMNS.filter((c) => c.indexed).map((c) => `CREATE INDEX IF NOT EXISTS findings_${c.name} ON findings (${c.name}, time)`),
    'CREATE TABLE IF NOT EXISTS fleet_sightings (sha256 TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (sha256, kind, value))',
    'CREATE TABLE IF NOT EXISTS summaries (id TEXT PRIMARY KEY, fold_of TEXT NOT NULL, received_at TIMESTAMPTZ NOT NULL DEFAULT now())',
    'CREATE TABLE IF NOT EXISTS fleet_binaries (sha256 TEXT PRIMARY KEY, first_seen TIMESTAMPTZ NOT NULL, containers INTEGER NOT NULL, images INTEGER NOT NULL, hosts INTEGER NOT NULL)',
  ];
}

// The bodies travel as one text, separated by U+001E (JSON.stringify escapes
// every control character, so none is inside a body), split in the same
// ROWS FROM as the column arrays (zipped row by row) and checked as JSON once
// each. New databases keep the body as json: PostgreSQL only checks it, where
// jsonb would build a binary copy of every body (a quarter of its CPU per row).
const BODY_SEPARATOR = '\u001e';
const insertFindings = (bodyType: string) => {
  const names = COLUMNS.map((c) => c.name);
  const arrays = COLUMNS.map((c, i) => `unnest($${i + 1}::${c.pgType.toLowerCase()}[])`);
  return `INSERT INTO findings (${names.join(', ')}, body)
    SELECT ${names.map((n) => `u.${n}`).join(', ')}, u.body::${bodyType}
    FROM ROWS FROM (${arrays.join(', ')}, unnest(string_to_array($${COLUMNS.length + 1}::text, chr(30)))) AS u (${names.join(', ')}, body)
    ON CONFLICT (id) DO NOTHING`;
};

/**
 * Bodies of ~2 KB are compressed on insert; lz4 costs a fraction of the
 * default pglz's CPU (pglz was a fifth of PostgreSQL's time per row). Only
 * new rows are affected, and only servers built with lz4 (PostgreSQL 14+).
 */
async function useLz4(c: pg.PoolClient): Promise<void> {
  if (Number((await c.query('SHOW server_version_num')).rows[0].server_version_num) < 140000) return;
  const r = await c.query(
    `SELECT (SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression') AS available,
       (SELECT attcompression = 'l' FROM pg_attribute WHERE attrelid = 'findings'::regclass AND attname = 'body') AS set`,
  );
  if (r.rows[0].available && !r.rows[0].set) await c.query('ALTER TABLE findings ALTER COLUMN body SET COMPRESSION lz4');
}

// Sightings first (only the new ones are counted), then the per-sha256
// counters grow by what was new; one round trip. A binary with nothing new
// is only read: its row is neither rewritten nor locked, so replicas and
// concurrent batches do not queue on the counters of a busy binary.
const UPSERT_FLEET = `
WITH s AS (
  INSERT INTO fleet_sightings (sha256, kind, value)
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
  ON CONFLICT DO NOTHING RETURNING sha256, kind
), n AS (
  SELECT sha256, count(*) FILTER (WHERE kind = 'c')::int AS c, count(*) FILTER (WHERE kind = 'i')::int AS i,
         count(*) FILTER (WHERE kind = 'h')::int AS h
  FROM s GROUP BY sha256
), x AS (
  SELECT u.sha256, u.first_seen, coalesce(n.c, 0) AS c, coalesce(n.i, 0) AS i, coalesce(n.h, 0) AS h
  FROM unnest($4::text[], $5::timestamptz[]) AS u (sha256, first_seen)
  LEFT JOIN n ON n.sha256 = u.sha256 LEFT JOIN fleet_binaries f ON f.sha256 = u.sha256
  WHERE f.sha256 IS NULL OR n.sha256 IS NOT NULL OR u.first_seen < f.first_seen
), up AS (
  INSERT INTO fleet_binaries AS b (sha256, first_seen, containers, images, hosts)
  SELECT sha256, first_seen, c, i, h FROM x ORDER BY sha256
  ON CONFLICT (sha256) DO UPDATE SET first_seen = least(b.first_seen, excluded.first_seen),
    containers = b.containers + excluded.containers, images = b.images + excluded.images, hosts = b.hosts + excluded.hosts
  RETURNING sha256, first_seen, containers, images, hosts, (xmax = 0) AS created
)
SELECT * FROM up
UNION ALL
SELECT f.sha256, f.first_seen, f.containers, f.images, f.hosts, false FROM fleet_binaries f
WHERE f.sha256 = ANY($4::text[]) AND NOT EXISTS (SELECT 1 FROM up WHERE up.sha256 = f.sha256)`;

// Sightings are never deleted, so one this process saw committed needs no
// INSERT again (true across replicas: another's commit only adds). A key is
// ~180 bytes in the worker's heap: 100,000 of them are ~18 MiB of the RSS
// budget (500,000 would be ~90 MiB); past that the set starts over.
const KNOWN_SIGHTINGS_MAX = 100_000;
const sightingKey = (s: Sighting) => `${s.sha256}\u0000${s.kind}\u0000${s.value}`;

/** Deadlock or serialization failure between replicas: the transaction is simply run again. */
const RETRY = new Set(['40P01', '40001']);

export class PostgresStore implements FindingStore {
  private readonly knownSightings = new Set<string>();

  private readonly insertSql: string;

  private constructor(private readonly pool: pg.Pool, bodyType: string) {
    this.insertSql = insertFindings(bodyType);
  }

  static async open(url: string, opts: OpenOptions = {}): Promise<PostgresStore> {
    const pool = new pg.Pool({ connectionString: url, max: opts.poolSize ?? 4 });
    pool.on('error', () => {}); // idle client errors surface on the next query
    let bodyType = 'json';
    if (!opts.readOnly) {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        await c.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
        for (const stmt of schema()) await c.query(stmt);
        await useLz4(c);
        bodyType = (await c.query("SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'findings'::regclass AND attname = 'body'")).rows[0].t;
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        await pool.end();
        throw err;
      } finally {
        c.release();
      }
    }
    return new PostgresStore(pool, bodyType);
  }

  async insert(findings: FindingJson[]): Promise<InsertResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.insertOnce(findings);
      } catch (err) {
        if (attempt >= 5 || !RETRY.has((err as { code?: string }).code ?? '')) throw err;
      }
    }
  }

  private async insertOnce(findings: FindingJson[]): Promise<InsertResult> {
    const client = await this.pool.connect();
    const fresh: Sighting[] = [];
    try {
      await client.query('BEGIN');
      // In order: a dedup summary (foldOf) updates its first finding, which may
      // be earlier in this batch, so the findings before it are written first.
      let stored = 0;
      let plain: FindingJson[] = [];
      for (const f of findings) {
        if (!f.foldOf) {
          plain.push(f);
          continue;
        }
        stored += await this.insertPlain(client, plain, fresh);
        plain = [];
        const first = await client.query('SELECT body FROM findings WHERE id = $1 FOR UPDATE', [f.foldOf]);
        if (!first.rowCount) {
          plain.push(f); // its first never arrived: stored as a finding of its own
          continue;
        }
        const s = await client.query('INSERT INTO summaries (id, fold_of) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [f.id!, f.foldOf]);
        if (!s.rowCount) continue;
        await client.query('UPDATE findings SET body = $1 WHERE id = $2', [JSON.stringify(applySummary(first.rows[0].body as FindingJson, f)), f.foldOf]);
        stored++;
      }
      stored += await this.insertPlain(client, plain, fresh);
      await client.query('COMMIT');
      if (this.knownSightings.size + fresh.length > KNOWN_SIGHTINGS_MAX) this.knownSightings.clear();
      for (const x of fresh) this.knownSightings.add(sightingKey(x));
      return { stored, duplicates: findings.length - stored };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  /** Fleet tables (one statement), then the findings (one multi-row INSERT); inside the caller's transaction. */
  private async insertPlain(client: pg.PoolClient, findings: FindingJson[], freshOut: Sighting[]): Promise<number> {
    if (!findings.length) return 0;
    const input = fleetInput(findings);
    const fresh = input.sightings.filter((x) => !this.knownSightings.has(sightingKey(x)));
    freshOut.push(...fresh);
    const state = new Map<string, FleetState>();
    if (input.binaries.length) {
      const r = await client.query({ name: 'dw_upsert_fleet', text: UPSERT_FLEET, values: [
        fresh.map((x) => x.sha256),
        fresh.map((x) => x.kind),
        fresh.map((x) => x.value),
        input.binaries.map((b) => b.sha256),
        input.binaries.map((b) => b.firstSeen),
      ] });
      for (const row of r.rows as Array<{ sha256: string; first_seen: Date; containers: number; images: number; hosts: number; created: boolean }>) {
        state.set(row.sha256, { firstSeen: row.first_seen.toISOString(), containers: row.containers, images: row.images, hosts: row.hosts, created: row.created });
      }
    }
    applyFleet(findings, state);
    const columns: Array<Array<string | number>> = COLUMNS.map(() => []);
    const bodies: string[] = [];
    for (const f of findings) {
      const row = rowOf(f);
      for (let i = 0; i < row.length; i++) columns[i]!.push(row[i]!);
      bodies.push(bodyJson(f));
    }
    const r = await client.query({ name: 'dw_insert_findings', text: this.insertSql, values: [...columns, bodies.join(BODY_SEPARATOR)] });
    return r.rowCount ?? 0;
  }

  private where(q: FindingQuery): { sql: string; args: string[] } {
    const where: string[] = [];
    const args: string[] = [];
    const arg = (v: string) => (args.push(v), `$${args.length}`);
    const glob = !!q.glob;
    const match = (col: string, v: string) =>
      glob && /[*?]/.test(v) ? `${col} LIKE ${arg(likePattern(v, true))}` : `${col} = ${arg(v)}`;
    if (q.since) where.push(`time >= ${arg(q.since)}`);
    if (q.until) where.push(`time < ${arg(q.until)}`);
    for (const [key, col] of Object.entries(FILTER_COLUMNS)) {
      const v = q[key as keyof typeof FILTER_COLUMNS];
      if (v) where.push(match(col, v));
    }
    if (q.container) {
      if (glob && /[*?]/.test(q.container)) where.push(`(${match('container_id', q.container)} OR ${match('container_name', q.container)})`);
      else if (/^[0-9a-f]{3,63}$/.test(q.container))
        where.push(`(container_id >= ${arg(q.container)} AND container_id < ${arg(q.container + 'g')} OR container_name = ${arg(q.container)})`);
      else where.push(`(container_id = ${arg(q.container)} OR container_name = ${arg(q.container)})`);
    }
    return { sql: where.length ? 'WHERE ' + where.join(' AND ') : '', args };
  }

  async query(q: FindingQuery): Promise<FindingJson[]> {
    const w = this.where(q);
    const r = await this.pool.query(`SELECT body FROM findings ${w.sql} ORDER BY time, id LIMIT ${clampLimit(q.limit)}`, w.args);
    return r.rows.map((row: { body: FindingJson }) => row.body);
  }

  async summary(by: SummaryKey, q: FindingQuery): Promise<SummaryRow[]> {
    const col = SUMMARY_COLUMNS[by];
    const w = this.where(q);
    const r = await this.pool.query(
      `SELECT ${col} AS key, count(*)::int AS findings, min(time) AS first_seen, max(time) AS last_seen,
         count(DISTINCT container_id)::int AS containers, count(DISTINCT hostname)::int AS hosts
       FROM findings ${w.sql} GROUP BY ${col} ORDER BY findings DESC, key LIMIT ${clampLimit(q.limit)}`,
      w.args,
    );
    return r.rows.map((x: { key: string; findings: number; first_seen: Date; last_seen: Date; containers: number; hosts: number }) => ({
      key: x.key, findings: x.findings, firstSeen: x.first_seen.toISOString(), lastSeen: x.last_seen.toISOString(), containers: x.containers, hosts: x.hosts,
    }));
  }

  async count(): Promise<number> {
    const r = await this.pool.query('SELECT count(*)::int AS n FROM findings');
    return r.rows[0].n as number;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
