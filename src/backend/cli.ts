// `driftwatch backend` and `driftwatch findings`.
import { parseArgs } from 'node:util';
import type { Logger } from '../log.js';
import { startBackend } from './server.js';
import { openStore } from './store.js';

export const DEFAULT_DATA_DIR = '/var/lib/driftwatch';
export const defaultDb = (dataDir = DEFAULT_DATA_DIR) => `${dataDir}/findings.db`;

export class CliUsageError extends Error {}

export async function backendCommand(argv: string[], log: Logger): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string', default: '127.0.0.1:4317' },
      db: { type: 'string', default: defaultDb() },
      token: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-client-ca': { type: 'string' },
      'ack-delay-ms': { type: 'string' },
    },
    strict: true,
  });
  if (!!values['tls-cert'] !== !!values['tls-key']) throw new CliUsageError('--tls-cert and --tls-key go together');
  if (values['tls-client-ca'] && !values['tls-cert']) throw new CliUsageError('--tls-client-ca (mTLS) needs --tls-cert and --tls-key');
  const token = values.token ?? process.env['DRIFTWATCH_TOKEN'];
  const backend = await startBackend({
    listen: values.listen,
    db: values.db,
    ...(token ? { token } : {}),
    ...(values['tls-cert'] ? { tls: { cert: values['tls-cert'], key: values['tls-key']!, ...(values['tls-client-ca'] ? { clientCa: values['tls-client-ca'] } : {}) } } : {}),
    ...(values['ack-delay-ms'] ? { ackDelayMs: Number(values['ack-delay-ms']) } : {}),
    log: (m) => log.warn(m),
  });
  log.info(`backend listening on ${backend.address} (store ${values.db.replace(/\/\/[^@]*@/, '//***@')})`);
  return new Promise((resolve) => {
    const stop = () => void backend.stop().then(() => resolve(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

export async function findingsCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      db: { type: 'string', default: defaultDb() },
      since: { type: 'string' },
      signature: { type: 'string' },
      container: { type: 'string' },
      limit: { type: 'string', default: '1000' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  let since = values.since;
  if (since) {
    const rel = /^(\d+)([smhd])$/.exec(since);
    if (rel) since = new Date(Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as 's']).toISOString();
    else if (Number.isNaN(Date.parse(since))) throw new CliUsageError(`--since wants an RFC 3339 time or a duration like 10m (got ${since})`);
  }
  const store = await openStore(values.db);
  try {
    const rows = await store.query({
      ...(since ? { since } : {}),
      ...(values.signature ? { signature: values.signature } : {}),
      ...(values.container ? { container: values.container } : {}),
      limit: Number(values.limit),
    });
    for (const f of rows) {
      if (values.json) process.stdout.write(JSON.stringify(f) + '\n');
      else {
        const c = f.container ?? {};
        process.stdout.write(
          `${f.time}  ${(f.signature?.severity ?? '').padEnd(8)} ${(f.signature?.id ?? '').padEnd(26)} ` +
            `${(c.name || c.id?.slice(0, 12) || '-').padEnd(20)} ${f.process?.executable?.path ?? ''}\n`,
        );
      }
    }
    if (!values.json) process.stdout.write(`${rows.length} finding(s)\n`);
  } finally {
    await store.close();
  }
  return 0;
}
