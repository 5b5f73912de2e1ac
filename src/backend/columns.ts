// The columns both stores keep beside the finding's JSON body: what users
// filter, sort and summarise by. One entry per column; adding a field that
// users filter by is one line here (both stores add the column and its index
// to existing databases on start).
import type { FindingJson } from '#gen/finding-json.js';
import { canonicalTime, MAX_COLUMN_CHARS } from './validate.js';

export interface Column {
  name: string;
  pgType: 'TEXT' | 'TIMESTAMPTZ' | 'INTEGER';
  /** The value from a validated finding. */
  value(f: FindingJson): string | number;
  /** Indexed as (column, time), so a filter on it is sorted by time for free. */
  indexed: boolean;
  /** What rows stored before the column existed get (else ''). */
  missing?: string;
}

const text = (v: string | undefined | null) => (v ?? '').slice(0, MAX_COLUMN_CHARS);

export const COLUMNS: readonly Column[] = [
  { name: 'id', pgType: 'TEXT', indexed: false, value: (f) => f.id! },
  // canonical UTC, so SQLite's text order is time order
  { name: 'time', pgType: 'TIMESTAMPTZ', indexed: false, value: (f) => canonicalTime(f) },
  { name: 'signature_id', pgType: 'TEXT', indexed: true, value: (f) => text(f.signature?.id) },
  { name: 'severity', pgType: 'TEXT', indexed: false, value: (f) => text(f.signature?.severity) },
  { name: 'container_id', pgType: 'TEXT', indexed: true, value: (f) => text(f.container?.id) },
  { name: 'container_name', pgType: 'TEXT', indexed: true, value: (f) => text(f.container?.name) },
  { name: 'image', pgType: 'TEXT', indexed: true, value: (f) => text(f.container?.image) },
  { name: 'namespace', pgType: 'TEXT', indexed: true, value: (f) => text(f.kubernetes?.namespace) },
  { name: 'hostname', pgType: 'TEXT', indexed: true, value: (f) => text(f.host?.hostname) },
  { name: 'sha256', pgType: 'TEXT', indexed: true, value: (f) => text(f.process?.executable?.sha256) },
  // findings from before prevention carry no action: they were alerts
  { name: 'action', pgType: 'TEXT', indexed: true, missing: 'alert', value: (f) => text(f.action) || 'alert' },
];

/** What `findings` filters by, and the column each filter reads. */
export const FILTER_COLUMNS = {
  signature: 'signature_id',
  namespace: 'namespace',
  image: 'image',
  host: 'hostname',
  sha256: 'sha256',
  action: 'action',
} as const;

/** What a finding's action can be (see pipeline/finding.ts actionOf). */
export const ACTIONS = ['alert', 'prevented', 'would_prevent'] as const;

/** What `findings --summary` groups by. */
export const SUMMARY_COLUMNS = {
  sha256: 'sha256',
  image: 'image',
  namespace: 'namespace',
  host: 'hostname',
  signature: 'signature_id',
  action: 'action',
} as const;
export type SummaryKey = keyof typeof SUMMARY_COLUMNS;

export function rowOf(f: FindingJson): Array<string | number> {
  return COLUMNS.map((c) => c.value(f));
}

/**
 * A filter value as SQL LIKE, literal unless `glob` (then `*` and `?` are
 * wildcards); `%`, `_` and the escape character are always literal.
 */
export function likePattern(value: string, glob: boolean, prefix = false): string {
  const escaped = value.replace(/[\\%_]/g, (c) => '\\' + c);
  const p = glob ? escaped.replace(/\*/g, '%').replace(/\?/g, '_') : escaped;
  return prefix ? p + '%' : p;
}
