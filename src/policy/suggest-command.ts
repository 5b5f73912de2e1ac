// `driftwatch policy suggest`: reads stored findings, prints policy YAML.
import { parseArgs } from 'node:util';
import { CliUsageError, defaultDb } from '../backend/cli.js';
import { openStore } from '../backend/open-store.js';
import { renderSuggestions, suggestRules } from './suggest.js';

export function parseSince(since: string | undefined, now = Date.now()): string | undefined {
  if (!since) return undefined;
  const rel = /^(\d+)([smhd])$/.exec(since);
  if (rel) return new Date(now - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as 's']).toISOString();
  if (Number.isNaN(Date.parse(since))) throw new CliUsageError(`--since wants an RFC 3339 time or a duration like 24h (got ${since})`);
  return new Date(since).toISOString();
}

function positiveInt(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CliUsageError(`${flag} wants a whole number of at least 1 (got ${v})`);
  return n;
}

export async function policyCommand(argv: string[], out: (s: string) => void = (s) => void process.stdout.write(s)): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'suggest') throw new CliUsageError('usage: driftwatch policy suggest [--db <file|postgres://...>] [--since 24h] [--min-containers 2] [--min-executions 3]');
  const { values } = parseArgs({
    args: rest,
    options: {
      db: { type: 'string', default: defaultDb() },
      since: { type: 'string', default: '7d' },
      'min-containers': { type: 'string', default: '2' },
      'min-executions': { type: 'string', default: '3' },
      limit: { type: 'string', default: '100000' },
    },
    strict: true,
  });
  const since = parseSince(values.since);
  const opts = {
    minContainers: positiveInt(values['min-containers'], '--min-containers'),
    minExecutions: positiveInt(values['min-executions'], '--min-executions'),
  };
  const store = await openStore(values.db);
  try {
    const findings = await store.query({ ...(since ? { since } : {}), limit: positiveInt(values.limit, '--limit') });
    out(renderSuggestions(suggestRules(findings, opts), { findings: findings.length, ...(since ? { since } : {}) }));
  } finally {
    await store.close();
  }
  return 0;
}
