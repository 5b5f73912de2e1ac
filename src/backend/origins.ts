// Where a finding came from (its container id and name, image, namespace,
// host and executable's sha256), with its signature and action, is one small
// integer in both stores: the key of that tuple in the table `origins`, and
// one index on (origin, time) serves the filters on all eight. A container's
// binary raises few signatures and actions, so the tuples stay few, and
// every index they replace was a B-tree insert per finding. A filter on them
// finds its keys in the small table first. This file holds what both stores
// share of that: the columns, and the split of a query's filters between the
// two tables.
import { FILTER_COLUMNS, likePattern } from './columns.js';
import type { FindingQuery } from './store.js';

// In this order: PostgreSQL's stored digests of the tuples were computed in it.
export const ORIGIN_COLUMNS: readonly string[] = ['container_id', 'container_name', 'image', 'namespace', 'hostname', 'sha256', 'signature_id', 'action'];

/** Conditions joined by AND, with their arguments in placeholder order. */
export interface Conditions {
  where: string[];
  args: string[];
}

/** How a store's SQL spells what the filters need. */
export interface Dialect {
  /** Adds an argument and returns its placeholder. */
  arg(list: string[], value: string): string;
  /** After `LIKE ?`: what makes backslash the escape character. */
  likeEscape: string;
  /** A value above every container id that starts with `prefix` (ids are hex). */
  idPrefixEnd(prefix: string): string;
}

const globbed = (q: FindingQuery, v: string) => !!q.glob && /[*?]/.test(v);

/**
 * A query's filters, split between the columns `onOrigin` says the origin's
 * table holds and the rest (time included), on the findings: `column` names
 * a finding's column as the statement reads it.
 */
export function filterConditions(q: FindingQuery, onOrigin: (column: string) => boolean, d: Dialect, column = (c: string) => c): { origin: Conditions; finding: Conditions } {
  const origin: Conditions = { where: [], args: [] };
  const finding: Conditions = { where: [], args: [] };
  const on = (col: string) => (onOrigin(col) ? { c: origin, name: col } : { c: finding, name: column(col) });
  const match = (col: string, v: string, c = on(col)) =>
    globbed(q, v) ? `${c.name} LIKE ${d.arg(c.c.args, likePattern(v, true))}${d.likeEscape}` : `${c.name} = ${d.arg(c.c.args, v)}`;
  for (const [key, col] of Object.entries(FILTER_COLUMNS)) {
    const v = q[key as keyof typeof FILTER_COLUMNS];
    if (v) on(col).c.where.push(match(col, v));
  }
  if (q.container) {
    const v = q.container;
    const id = on('container_id');
    const name = on('container_name');
    let cond: string;
    if (globbed(q, v)) cond = `(${match('container_id', v, id)} OR ${match('container_name', v, name)})`;
    // an id prefix is a range of ids
    else if (/^[0-9a-f]{3,63}$/.test(v)) cond = `((${id.name} >= ${d.arg(id.c.args, v)} AND ${id.name} < ${d.arg(id.c.args, d.idPrefixEnd(v))}) OR ${name.name} = ${d.arg(name.c.args, v)})`;
    else cond = `(${id.name} = ${d.arg(id.c.args, v)} OR ${name.name} = ${d.arg(name.c.args, v)})`;
    id.c.where.push(cond); // id and name live in the same table
  }
  if (q.since) finding.where.push(`${column('time')} >= ${d.arg(finding.args, q.since)}`);
  if (q.until) finding.where.push(`${column('time')} < ${d.arg(finding.args, q.until)}`);
  return { origin, finding };
}
