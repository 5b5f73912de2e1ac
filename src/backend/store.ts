// Where the backend keeps findings: SQLite (a file, the default) or
// PostgreSQL (a postgres:// URL). Both dedupe on the finding id, and both
// apply a dedup summary (foldOf) to the finding it stands for, so a group of
// repeats is one stored finding with its count.
import type { FindingJson } from '#gen/finding-json.js';

export interface InsertResult {
  stored: number;
  duplicates: number;
}

export interface FindingQuery {
  since?: string; // RFC 3339
  signature?: string;
  container?: string; // id prefix or name
  limit?: number;
}

export interface FindingStore {
  insert(findings: FindingJson[]): Promise<InsertResult>;
  query(q: FindingQuery): Promise<FindingJson[]>;
  count(): Promise<number>;
  close(): Promise<void>;
}

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

export async function openStore(url: string): Promise<FindingStore> {
  if (isPostgresUrl(url)) {
    const { PostgresStore } = await import('./postgres-store.js');
    return PostgresStore.open(url);
  }
  const { SqliteStore } = await import('./sqlite-store.js');
  return SqliteStore.open(url.replace(/^sqlite:(\/\/)?/, ''));
}

/** Columns both stores index, taken from the finding. */
export function indexedColumns(f: FindingJson): [string, string, string, string, string, string, string] {
  return [
    f.id ?? '',
    f.time ?? '',
    f.signature?.id ?? '',
    f.signature?.severity ?? '',
    f.container?.id ?? '',
    f.container?.name ?? '',
    f.host?.hostname ?? '',
  ];
}

/** The first finding of a dedup group, updated by the group's summary. */
export function applySummary(first: FindingJson, summary: FindingJson): FindingJson {
  const out: FindingJson = { ...first, count: Math.max(first.count ?? 1, summary.count ?? 1) };
  if (summary.lastSeen && (!first.lastSeen || summary.lastSeen > first.lastSeen)) out.lastSeen = summary.lastSeen;
  if (summary.distinctArgs) out.distinctArgs = summary.distinctArgs;
  if (summary.argsOmitted) out.argsOmitted = summary.argsOmitted;
  return out;
}
