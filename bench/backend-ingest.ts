// Rows 7 and 8: the backend under a fleet. `driftwatch backend` runs as its
// own process; N sensors (a gRPC channel each, one batch of 512 realistic
// findings at a time) send to it for a fixed time, against SQLite and a
// throwaway PostgreSQL. Then both stores are filled to 1 M findings and
// filtered queries are timed through the store API the CLI uses.
//
// Each store first takes load that is not measured (WARM_UP_SECONDS), so the
// rows are a backend in service, not one starting cold: a fresh PostgreSQL
// creates and zero-fills a new 16 MB WAL segment every fraction of a second
// until its first checkpoints, and a server in service recycles them (a
// sixth of its CPU per finding went to that zero-fill in the first 20 s).
// `WARM_UP_SECONDS=0` measures the cold start.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../src/backend/open-store.js';
import type { FindingQuery } from '../src/backend/store.js';
import { checkFinding } from '../src/backend/validate.js';
import { realisticFinding, runLoad, type LoadResult } from '../test/helpers/load.js';
import { freePort, postgresSkipReason, startPostgres, type PgServer } from '../test/helpers/postgres.js';
import { cliArgs } from '../test/helpers/sensor-process.js';

export interface IngestRow extends LoadResult {
  store: 'sqlite' | 'postgres';
  maxRssMiB: number;
  /** CPU time of the backend process (both threads) per stored finding; the database server's not included. */
  cpuUsPerFinding: number;
  /** PostgreSQL: the server's own CPU time per stored finding. */
  serverCpuUsPerFinding?: number;
}

export interface QueryRow {
  store: 'sqlite' | 'postgres';
  rows: number;
  slowestMs: number;
  slowest: string;
  all: Record<string, number>;
}

const CLK_TCK = 100;
const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
};
const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startBackendProcess(db: string): Promise<{ proc: ChildProcess; address: string }> {
  const port = await freePort();
  const proc = spawn(process.execPath, cliArgs('backend', '--listen', `127.0.0.1:${port}`, '--db', db), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const deadline = Date.now() + 20_000;
  while (!/listening/.test(err)) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`backend did not start: ${err}`);
    await sleep(50);
  }
  return { proc, address: `127.0.0.1:${port}` };
}

async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([exited, sleep(8000)]);
  if (proc.exitCode === null) proc.kill('SIGKILL');
}

async function ingestRun(store: 'sqlite' | 'postgres', db: string, sensors: number, seconds: number, serverCpu?: () => number): Promise<IngestRow> {
  const { proc, address } = await startBackendProcess(db);
  let maxRss = rssKiB(proc.pid!);
  const sampler = setInterval(() => (maxRss = Math.max(maxRss, rssKiB(proc.pid!))), 200);
  try {
    const cpu0 = cpuTicks(proc.pid!);
    const server0 = serverCpu?.();
    const r = await runLoad(address, sensors, seconds);
    const cpuUs = ((cpuTicks(proc.pid!) - cpu0) / CLK_TCK) * 1e6;
    const per = (us: number) => us / Math.max(1, r.stored);
    return {
      store, ...r, maxRssMiB: Math.max(maxRss, rssKiB(proc.pid!)) / 1024, cpuUsPerFinding: per(cpuUs),
      ...(server0 === undefined ? {} : { serverCpuUsPerFinding: per((serverCpu!() - server0) * 1e6) }),
    };
  } finally {
    clearInterval(sampler);
    await stopProcess(proc);
  }
}

async function fill(db: string, target: number): Promise<number> {
  const store = await openStore(db);
  try {
    let n = await store.count();
    const base = Math.floor(Math.random() * 1e9);
    while (n < target) {
      const batch = Array.from({ length: Math.min(5000, target - n) }, (_, i) => {
        const c = checkFinding(realisticFinding(n + i, `fill-${base}-${n + i}`), i);
        if (!c.ok) throw new Error(c.rejection.reason);
        return c.finding;
      });
      n += (await store.insert(batch)).stored;
    }
    return n;
  } finally {
    await store.close();
  }
}

// The fill writes ~1 M rows in about a minute, faster than autovacuum's
// first look (it wakes once a minute); without statistics the planner walks
// the time index for an OR of two indexed columns (the container filter).
// A table that grows at a fleet's pace is analyzed as it grows.
async function analyze(url: string): Promise<void> {
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('ANALYZE'); // the findings and the origins they name
  } finally {
    await c.end();
  }
}

async function timeQueries(store: 'sqlite' | 'postgres', db: string, filled: number): Promise<QueryRow> {
  const s = await openStore(db, { readOnly: true });
  const sample = realisticFinding(12345);
  const queries: Record<string, FindingQuery> = {
    'container name': { container: sample.container!.name! },
    'container id prefix': { container: sample.container!.id!.slice(0, 12) },
    namespace: { namespace: sample.kubernetes!.namespace! },
    image: { image: sample.container!.image! },
    host: { host: sample.host!.hostname! },
    sha256: { sha256: sample.process!.executable!.sha256! },
    signature: { signature: 'drift.new_executable' },
    'since (last 10 min of data)': { since: new Date(Date.UTC(2026, 10, 1) + (filled - 600) * 1000).toISOString() },
    'namespace glob': { namespace: 'team-1*', glob: true },
  };
  const all: Record<string, number> = {};
  try {
    const rows = await s.count();
    for (const [name, q] of Object.entries(queries)) {
      await s.query({ ...q, limit: 1000 }); // warm the cache, as a user's second look would
      const t0 = performance.now();
      const got = await s.query({ ...q, limit: 1000 });
      all[name] = performance.now() - t0;
      if (got.length === 0 && !q.since) throw new Error(`query ${name} found nothing`);
    }
    const [slowest, slowestMs] = Object.entries(all).sort((a, b) => b[1] - a[1])[0]!;
    return { store, rows, slowestMs, slowest, all };
  } finally {
    await s.close();
  }
}

const WARM_UP = Number(process.env.WARM_UP_SECONDS ?? 20);

export async function backendIngest(seconds = 20, queryRows = 1_000_000, stores = ['sqlite', 'postgres'], warmUpSeconds = WARM_UP): Promise<{ ingest: IngestRow[]; queries: QueryRow[]; skipped?: string }> {
  const tmp = mkdtempSync(join(tmpdir(), 'driftwatch-bench-backend-'));
  const pgSkip = postgresSkipReason();
  let pg: PgServer | undefined;
  const ingest: IngestRow[] = [];
  const queries: QueryRow[] = [];
  try {
    if (!pgSkip && stores.includes('postgres')) pg = await startPostgres();
    const dbs: Array<['sqlite' | 'postgres', string]> = [];
    if (stores.includes('sqlite')) dbs.push(['sqlite', join(tmp, 'findings.db')]);
    if (pg) dbs.push(['postgres', pg.url]);
    for (const [store, db] of dbs) {
      if (warmUpSeconds > 0) await ingestRun(store, db, 16, warmUpSeconds);
      for (const sensors of [4, 16]) ingest.push(await ingestRun(store, db, sensors, seconds, store === 'postgres' ? pg!.cpuSeconds : undefined));
      await fill(db, queryRows);
      if (store === 'postgres') await analyze(db);
      queries.push(await timeQueries(store, db, queryRows));
    }
    return { ingest, queries, ...(pgSkip ? { skipped: `PostgreSQL: ${pgSkip}` } : {}) };
  } finally {
    pg?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.argv[2] ?? 20);
  const rows = Number(process.argv[3] ?? 1_000_000);
  const stores = (process.argv[4] ?? 'sqlite,postgres').split(',');
  backendIngest(seconds, rows, stores).then((r) => console.log(JSON.stringify(r, null, 2)));
}
