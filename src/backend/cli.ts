// `driftwatch backend` and `driftwatch findings`.
import { parseArgs } from 'node:util';
import type { Logger } from '../log.js';
import { existsSync } from 'node:fs';
import { ACTIONS, SUMMARY_COLUMNS, type SummaryKey } from './columns.js';
import { startBackend } from './server.js';
import { isPostgresUrl, openStore, sqlitePath } from './open-store.js';
import type { FindingQuery, FindingStore } from './store.js';
import { parseRfc3339 } from './validate.js';

export const DEFAULT_DATA_DIR = '/var/lib/driftwatch';
export const defaultDb = (dataDir = DEFAULT_DATA_DIR) => `${dataDir}/findings.db`;

export class CliUsageError extends Error {}

export async function backendCommand(argv: string[], log: Logger): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string', default: '127.0.0.1:4317' },
      db: { type: 'string' },
      token: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-client-ca': { type: 'string' },
      'ack-delay-ms': { type: 'string' },
      'max-in-flight': { type: 'string' },
      'max-queued-findings': { type: 'string' },
      'max-connections': { type: 'string' },
      'handshake-timeout-ms': { type: 'string' },
      'pool-size': { type: 'string' },
    },
    strict: true,
  });
  const int = (flag: string, min: number, max: number): number | undefined => {
    const v = values[flag as 'max-in-flight'];
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new CliUsageError(`--${flag} wants a whole number from ${min} to ${max} (got ${JSON.stringify(v)})`);
    return Number(v);
  };
  const limits = {
    ...(int('max-in-flight', 1, 10_000) !== undefined ? { maxInFlight: int('max-in-flight', 1, 10_000)! } : {}),
    ...(int('max-queued-findings', 1, 10_000_000) !== undefined ? { maxQueuedRows: int('max-queued-findings', 1, 10_000_000)! } : {}),
    ...(int('max-connections', 1, 1_000_000) !== undefined ? { maxConnections: int('max-connections', 1, 1_000_000)! } : {}),
    ...(int('handshake-timeout-ms', 100, 600_000) !== undefined ? { handshakeTimeoutMs: int('handshake-timeout-ms', 100, 600_000)! } : {}),
  };
  const ackDelayMs = int('ack-delay-ms', 0, 600_000);
  const poolSize = int('pool-size', 1, 100);
  // the environment keeps a database URL with a password out of the process arguments
  const db = values.db ?? process.env['DRIFTWATCH_DB'] ?? defaultDb();
  if (!db) throw new CliUsageError('--db needs a SQLite file or a postgres:// URL');
  if (!!values['tls-cert'] !== !!values['tls-key']) throw new CliUsageError('--tls-cert and --tls-key go together');
  if (values['tls-client-ca'] && !values['tls-cert']) throw new CliUsageError('--tls-client-ca (mTLS) needs --tls-cert and --tls-key');
  const token = values.token ?? process.env['DRIFTWATCH_TOKEN'];
  const backend = await startBackend({
    listen: values.listen,
    db,
    limits,
    ...(poolSize ? { poolSize } : {}),
    ...(token ? { token } : {}),
    ...(values['tls-cert'] ? { tls: { cert: values['tls-cert'], key: values['tls-key']!, ...(values['tls-client-ca'] ? { clientCa: values['tls-client-ca'] } : {}) } } : {}),
    ...(ackDelayMs ? { ackDelayMs } : {}),
    log: (m) => log.warn(m),
  });
  log.info(`backend listening on ${backend.address} (store ${db.replace(/\/\/[^@]*@/, '//***@')})`);
  return new Promise((resolve) => {
    // done within 5 s whatever the clients do: 2 s for calls in progress, then cut
    const stop = () =>
      void backend.stop(2000).then(() => {
        const m = backend.metrics;
        log.info(
          `backend stopped: ${m.requests} requests, ${m.stored} stored, ${m.duplicates} duplicates, ${m.rejectedFindings} findings rejected, ` +
            `${m.truncatedFindings} truncated, ${m.unauthenticated} unauthenticated, ${m.resourceExhausted} refused for load, ` +
            `${m.storeUnavailable} store failures, ${m.connectionsTimedOut + m.connectionsRefused} connections cut`,
        );
        resolve(0);
      });
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

const SUMMARY_KEYS = Object.keys(SUMMARY_COLUMNS) as SummaryKey[];

/** `--since`/`--until`: an RFC 3339 time or a duration back from now (`90s`, `10m`, `2h`, `7d`), as canonical UTC. */
export function parseTimeFlag(flag: string, value: string, now = Date.now()): string {
  const rel = /^(\d+)([smhd])$/.exec(value);
  if (rel) return new Date(now - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as 's']).toISOString();
  const t = parseRfc3339(value);
  if (!t) throw new CliUsageError(`--${flag} wants an RFC 3339 time (2024-03-07T10:00:00Z) or a duration like 10m (got ${JSON.stringify(value)})`);
  return t;
}

function parseLimit(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 100_000) throw new CliUsageError(`--limit wants a whole number from 1 to 100000 (got ${JSON.stringify(value)})`);
  return Number(value);
}

export async function findingsCommand(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      db: { type: 'string', default: defaultDb() },
      since: { type: 'string' },
      until: { type: 'string' },
      signature: { type: 'string' },
      container: { type: 'string' },
      namespace: { type: 'string' },
      image: { type: 'string' },
      host: { type: 'string' },
      sha256: { type: 'string' },
      action: { type: 'string' },
      glob: { type: 'boolean', default: false },
      summary: { type: 'string' },
      limit: { type: 'string', default: '1000' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length) throw new CliUsageError(`findings takes no positional arguments (got ${JSON.stringify(positionals[0])}); filters are flags, e.g. --container web`);
  const summary = values.summary as SummaryKey | undefined;
  if (summary !== undefined && !SUMMARY_KEYS.includes(summary)) throw new CliUsageError(`--summary wants one of ${SUMMARY_KEYS.join(', ')} (got ${JSON.stringify(values.summary)})`);
  const query: FindingQuery = { limit: parseLimit(values.limit), glob: values.glob };
  if (values.since) query.since = parseTimeFlag('since', values.since);
  if (values.until) query.until = parseTimeFlag('until', values.until);
  for (const key of ['signature', 'container', 'namespace', 'image', 'host', 'sha256'] as const) {
    const v = values[key];
    if (v === undefined) continue;
    if (v === '') throw new CliUsageError(`--${key} needs a value`);
    if (!values.glob && /[*?]/.test(v)) throw new CliUsageError(`--${key} ${JSON.stringify(v)}: filters are literal; add --glob for * and ? wildcards`);
    query[key] = v;
  }
  if (values.action !== undefined) {
    if (!(ACTIONS as readonly string[]).includes(values.action)) throw new CliUsageError(`--action wants one of ${ACTIONS.join(', ')} (got ${JSON.stringify(values.action)})`);
    query.action = values.action;
  }
  if (!isPostgresUrl(values.db) && !existsSync(sqlitePath(values.db))) {
    throw new CliUsageError(`no database at ${sqlitePath(values.db)} (give the backend's --db: a SQLite file or a postgres:// URL)`);
  }
  let store;
  try {
    store = await openStore(values.db, { readOnly: true, poolSize: 1 });
  } catch (err) {
    throw new CliUsageError(`cannot open ${values.db.replace(/\/\/[^@]*@/, '//***@')}: ${(err as Error).message}`);
  }
  try {
    return await printFindings(store, query, summary, values.json, out);
  } catch (err) {
    throw new CliUsageError(`cannot read findings from ${values.db.replace(/\/\/[^@]*@/, '//***@')}: ${(err as Error).message}`);
  } finally {
    await store.close();
  }
}

async function printFindings(store: FindingStore, query: FindingQuery, summary: SummaryKey | undefined, json: boolean, out: (s: string) => void): Promise<number> {
  if (summary) {
    const rows = await store.summary(summary, query);
    if (json) for (const r of rows) out(JSON.stringify(r) + '\n');
    else {
      out(`${summary.padEnd(summary === 'sha256' ? 64 : 30)}  findings  containers  hosts  first seen                 last seen\n`);
      for (const r of rows) {
        out(`${(r.key || '-').padEnd(summary === 'sha256' ? 64 : 30)}  ${String(r.findings).padStart(8)}  ${String(r.containers).padStart(10)}  ${String(r.hosts).padStart(5)}  ${r.firstSeen.padEnd(25)}  ${r.lastSeen}\n`);
      }
      out(`${rows.length} ${summary} value(s)\n`);
    }
    return 0;
  }
  const rows = await store.query(query);
  for (const f of rows) {
    if (json) out(JSON.stringify(f) + '\n');
    else {
      const c = f.container ?? {};
      const fleet = f.fleet ? (f.fleet.isNew ? 'NEW to fleet' : `fleet: ${f.fleet.containers ?? 0}c/${f.fleet.hosts ?? 0}h`) : '';
      out(
        `${f.time}  ${(f.signature?.severity ?? '').padEnd(8)} ${(f.signature?.id ?? '').padEnd(26)} ` +
          `${(c.name || c.id?.slice(0, 12) || '-').padEnd(20)} ${f.process?.executable?.path ?? ''}${fleet ? '  ' + fleet : ''}\n`,
      );
    }
  }
  if (!json) out(`${rows.length} finding(s)\n`);
  return 0;
}
