// Where the backend keeps findings: the interface both stores implement,
// SQLite (a file, the default) and PostgreSQL (a postgres:// URL), and what
// they share. Both dedupe on the finding id, so a finding sent twice, or to
// two replicas, is stored once. open-store.ts picks one by its URL.
import type { FindingJson } from '#gen/finding-json.js';
import type { SummaryKey } from './columns.js';

export interface InsertResult {
  stored: number;
  duplicates: number;
}

export interface FindingQuery {
  since?: string; // RFC 3339
  until?: string;
  signature?: string;
  container?: string; // id prefix or name
  namespace?: string;
  image?: string;
  host?: string;
  sha256?: string;
  action?: string; // alert, prevented or would_prevent
  /** `*` and `?` in filter values are wildcards (otherwise every character is literal) */
  glob?: boolean;
  limit?: number;
}

export interface SummaryRow {
  key: string;
  findings: number;
  firstSeen: string;
  lastSeen: string;
  containers: number;
  hosts: number;
}

export interface FindingStore {
  /** Stores validated findings (see validate.ts) in one transaction, with their fleet fields. */
  insert(findings: FindingJson[]): Promise<InsertResult>;
  query(q: FindingQuery): Promise<FindingJson[]>;
  summary(by: SummaryKey, q: FindingQuery): Promise<SummaryRow[]>;
  count(): Promise<number>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Open for reading only: SQLite refuses a file that does not exist instead of creating it. */
  readOnly?: boolean;
  /** PostgreSQL pool size. */
  poolSize?: number;
}

export const clampLimit = (limit: number | undefined) => Math.max(1, Math.min(limit ?? 1000, 100_000));

/** The first finding of a dedup group, updated by the group's summary (a finding with foldOf). */
export function applySummary(first: FindingJson, summary: FindingJson): FindingJson {
  const out: FindingJson = { ...first, count: Math.max(first.count ?? 1, summary.count ?? 1) };
  if (summary.lastSeen && (!first.lastSeen || summary.lastSeen > first.lastSeen)) out.lastSeen = summary.lastSeen;
  if (summary.distinctArgs) out.distinctArgs = summary.distinctArgs;
  if (summary.argsOmitted) out.argsOmitted = summary.argsOmitted;
  return out;
}
