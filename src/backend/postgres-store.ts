import pg from 'pg';
import type { FindingJson } from '#gen/finding-json.js';
import { applySummary, indexedColumns, type FindingQuery, type FindingStore, type InsertResult } from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS findings (
  id TEXT PRIMARY KEY,
  time TIMESTAMPTZ NOT NULL,
  signature_id TEXT NOT NULL,
  severity TEXT NOT NULL,
  container_id TEXT NOT NULL,
  container_name TEXT NOT NULL,
  hostname TEXT NOT NULL,
  received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  body JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_time ON findings (time);
CREATE INDEX IF NOT EXISTS findings_signature ON findings (signature_id, time);
CREATE TABLE IF NOT EXISTS summaries (
  id TEXT PRIMARY KEY,
  fold_of TEXT NOT NULL,
  received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
`;

export class PostgresStore implements FindingStore {
  private constructor(private readonly pool: pg.Pool) {}

  static async open(url: string): Promise<PostgresStore> {
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    pool.on('error', () => {}); // idle client errors surface on the next query
    await pool.query(SCHEMA);
    return new PostgresStore(pool);
  }

  async insert(findings: FindingJson[]): Promise<InsertResult> {
    const client = await this.pool.connect();
    let stored = 0;
    try {
      await client.query('BEGIN');
      for (const f of findings) {
        if (f.foldOf) {
          const first = await client.query('SELECT body FROM findings WHERE id = $1 FOR UPDATE', [f.foldOf]);
          if (first.rowCount) {
            // A summary of a stored finding updates it; stored once like any finding.
            const s = await client.query('INSERT INTO summaries (id, fold_of) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [f.id ?? '', f.foldOf]);
            if (!s.rowCount) continue;
            await client.query('UPDATE findings SET body = $1 WHERE id = $2', [JSON.stringify(applySummary(first.rows[0].body as FindingJson, f)), f.foldOf]);
            stored++;
            continue;
          }
        }
        const [id, time, sig, sev, cid, cname, host] = indexedColumns(f);
        const r = await client.query(
          `INSERT INTO findings (id, time, signature_id, severity, container_id, container_name, hostname, body)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`,
          [id, time, sig, sev, cid, cname, host, JSON.stringify(f)],
        );
        stored += r.rowCount ?? 0;
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
    return { stored, duplicates: findings.length - stored };
  }

  async query(q: FindingQuery): Promise<FindingJson[]> {
    const where: string[] = [];
    const args: string[] = [];
    const arg = (v: string) => (args.push(v), `$${args.length}`);
    if (q.since) where.push(`time >= ${arg(q.since)}`);
    if (q.signature) where.push(`signature_id = ${arg(q.signature)}`);
    if (q.container) where.push(`(container_id LIKE ${arg(`${q.container}%`)} OR container_name = ${arg(q.container)})`);
    const limit = Math.max(1, Math.min(q.limit ?? 1000, 100000));
    const r = await this.pool.query(
      `SELECT body FROM findings ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY time, id LIMIT ${limit}`,
      args,
    );
    return r.rows.map((row: { body: FindingJson }) => row.body);
  }

  async count(): Promise<number> {
    const r = await this.pool.query('SELECT count(*)::int AS n FROM findings');
    return r.rows[0].n as number;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
