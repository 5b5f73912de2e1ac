import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { FindingJson } from '#gen/finding-json.js';
import { applySummary, indexedColumns, type FindingQuery, type FindingStore, type InsertResult } from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS findings (
  id TEXT PRIMARY KEY,
  time TEXT NOT NULL,
  signature_id TEXT NOT NULL,
  severity TEXT NOT NULL,
  container_id TEXT NOT NULL,
  container_name TEXT NOT NULL,
  hostname TEXT NOT NULL,
  received_at TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_time ON findings (time);
CREATE INDEX IF NOT EXISTS findings_signature ON findings (signature_id, time);
CREATE TABLE IF NOT EXISTS summaries (
  id TEXT PRIMARY KEY,
  fold_of TEXT NOT NULL,
  received_at TEXT NOT NULL
);
`;

export class SqliteStore implements FindingStore {
  private constructor(private readonly db: DatabaseSync) {}

  static open(path: string): SqliteStore {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const db = new DatabaseSync(path);
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;');
    db.exec(SCHEMA);
    return new SqliteStore(db);
  }

  async insert(findings: FindingJson[]): Promise<InsertResult> {
    const stmt = this.db.prepare(
      `INSERT INTO findings (id, time, signature_id, severity, container_id, container_name, hostname, received_at, body)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    );
    const summary = this.db.prepare('INSERT INTO summaries (id, fold_of, received_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING');
    const firstOf = this.db.prepare('SELECT body FROM findings WHERE id = ?');
    const update = this.db.prepare('UPDATE findings SET body = ? WHERE id = ?');
    const now = new Date().toISOString();
    let stored = 0;
    this.db.exec('BEGIN');
    try {
      for (const f of findings) {
        const first = f.foldOf ? (firstOf.get(f.foldOf) as { body: string } | undefined) : undefined;
        if (first) {
          // A summary of a stored finding updates it; stored once like any finding.
          if (Number(summary.run(f.id ?? '', f.foldOf!, now).changes) === 0) continue;
          update.run(JSON.stringify(applySummary(JSON.parse(first.body) as FindingJson, f)), f.foldOf!);
          stored++;
        } else stored += Number(stmt.run(...indexedColumns(f), now, JSON.stringify(f)).changes);
      }
      this.db.exec('COMMIT');
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
    return { stored, duplicates: findings.length - stored };
  }

  async query(q: FindingQuery): Promise<FindingJson[]> {
    const where: string[] = [];
    const args: string[] = [];
    if (q.since) (where.push('time >= ?'), args.push(q.since));
    if (q.signature) (where.push('signature_id = ?'), args.push(q.signature));
    if (q.container) (where.push('(container_id LIKE ? OR container_name = ?)'), args.push(`${q.container}%`, q.container));
    const sql = `SELECT body FROM findings ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY time, id LIMIT ${Math.max(1, Math.min(q.limit ?? 1000, 100000))}`;
    return (this.db.prepare(sql).all(...args) as Array<{ body: string }>).map((r) => JSON.parse(r.body) as FindingJson);
  }

  async count(): Promise<number> {
    return Number((this.db.prepare('SELECT count(*) AS n FROM findings').get() as { n: number }).n);
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
