// One Export request, from bytes to stored rows: split into findings, check
// each on its own, store the good ones (bisecting around a finding the store
// refuses), and say which were rejected and why.
import { describeRejections, checkEncodedFinding, splitRequest, type Rejection } from './validate.js';
import { insertBisecting, isStoreUnavailable } from './bisect.js';
import type { FindingStore, InsertResult } from './store.js';
import type { FindingJson } from '#gen/finding-json.js';
import { wireRow } from './wire-row.js';
import { jsonText, PackedRowReader, RowPacker, storeRowOf, unpackRows, type PackedRows, type RowSource, type StoreRow } from './checked-rows.js';

export interface IngestLimits {
  maxFindingsPerRequest: number;
}

export type IngestOutcome =
  | { kind: 'ok'; stored: number; duplicates: number; rejected: Rejection[]; truncated: number }
  | { kind: 'invalid'; message: string }
  | { kind: 'unavailable'; message: string };

type Checked<T> = { kind: 'checked'; good: T[]; rejected: Rejection[]; truncated: number };
/** A request checked into its rows (PostgreSQL), waiting for a connection. */
export type CheckedRows = Checked<StoreRow> | Extract<IngestOutcome, { kind: 'invalid' }>;

/** Decodes and checks every finding of a request; the request is refused only when none is good. */
function checkRequest(buf: Uint8Array, limits: IngestLimits): Checked<FindingJson> | Extract<IngestOutcome, { kind: 'invalid' }> {
  const good: FindingJson[] = [];
  const c = checkEach(buf, limits, (f) => good.push(f));
  return c.kind === 'invalid' ? c : { ...c, kind: 'checked', good };
}

/**
 * checkRequest, each good finding as its row (PostgreSQL's store thread:
 * each finding becomes its row before the next is decoded, so only rows
 * wait for the database, not decoded findings).
 */
export function checkRows(buf: Uint8Array, limits: IngestLimits): CheckedRows {
  const good: StoreRow[] = [];
  const c = checkEachRow(buf, limits, (r) => good.push(r));
  return c.kind === 'invalid' ? c : { ...c, kind: 'checked', good };
}

/** checkEach, each good finding handed on as its row: by the wire walk (wire-row.ts) where it can, else by the full check. */
function checkEachRow(buf: Uint8Array, limits: IngestLimits, keep: (r: StoreRow) => void): ReturnType<typeof checkEach> {
  return checkEach(buf, limits, (f) => keep(storeRowOf(f)), (part) => {
    const row = wireRow(part);
    if (row) keep(row);
    return row !== null;
  });
}

/**
 * checkRequest, each good finding handed to `keep` as soon as it is checked;
 * `fast`, when given, takes a finding first and says whether it did.
 */
function checkEach(buf: Uint8Array, limits: IngestLimits, keep: (f: FindingJson) => void, fast?: (part: Uint8Array) => boolean): { kind: 'counted'; good: number; rejected: Rejection[]; truncated: number } | Extract<IngestOutcome, { kind: 'invalid' }> {
  let parts: Uint8Array[];
  try {
    parts = splitRequest(buf);
  } catch (err) {
    return { kind: 'invalid', message: `malformed ExportRequest: ${(err as Error).message}` };
  }
  if (parts.length === 0) return { kind: 'invalid', message: 'no findings in request' };
  if (parts.length > limits.maxFindingsPerRequest) return { kind: 'invalid', message: `more than ${limits.maxFindingsPerRequest} findings in one request` };
  let good = 0;
  const rejected: Rejection[] = [];
  let truncated = 0;
  for (let i = 0; i < parts.length; i++) {
    if (fast?.(parts[i]!)) {
      good++;
      continue;
    }
    const c = checkEncodedFinding(parts[i]!, i);
    if (!c.ok) rejected.push(c.rejection);
    else {
      keep(c.finding);
      good++;
      if (c.truncated) truncated++;
    }
  }
  if (good === 0) return { kind: 'invalid', message: `all ${parts.length} findings invalid: ${describeRejections(rejected, 3)}` };
  return { kind: 'counted', good, rejected, truncated };
}

export async function ingest(store: FindingStore, buf: Uint8Array, limits: IngestLimits): Promise<IngestOutcome> {
  const c = checkRequest(buf, limits);
  if (c.kind === 'invalid') return c;
  return storeBisecting(store, c.good, c.rejected, c.truncated);
}

/** Stores findings, a finding the store refuses bisected out and named among the rejections. */
async function storeBisecting(store: FindingStore, good: FindingJson[], rejected: Rejection[], truncated: number): Promise<IngestOutcome> {
  try {
    const r = await insertBisecting(store, good);
    const out = [...rejected];
    for (const f of r.failed) out.push({ index: good.findIndex((g) => g.id === f.id), id: f.id, field: 'finding', reason: `refused by the store: ${f.reason}` });
    return { kind: 'ok', stored: r.stored, duplicates: r.duplicates, rejected: out, truncated };
  } catch (err) {
    return { kind: 'unavailable', message: `store unavailable: ${(err as Error).message}${isStoreUnavailable(err) ? '' : ' (bisect)'}` };
  }
}

/** A request checked by the check thread: its good findings as packed rows (see checked-rows.ts). */
export type PackedRequest =
  | { kind: 'rows'; rows: PackedRows; count: number; rejected: Rejection[]; truncated: number }
  | Extract<IngestOutcome, { kind: 'invalid' }>;

const packer = new RowPacker();

/** `spare`: buffers of requests the store thread is done with, to pack into again. */
export function checkAndPack(buf: Uint8Array, limits: IngestLimits, spare: ArrayBuffer[] = []): PackedRequest {
  let c: ReturnType<typeof checkEach>;
  let rows: PackedRows;
  try {
    c = checkEachRow(buf, limits, (r) => packer.add(r));
  } finally {
    rows = packer.take(spare); // whatever happened: the next request starts empty
  }
  if (c.kind === 'invalid') return c;
  return { kind: 'rows', rows, count: c.good, rejected: c.rejected, truncated: c.truncated };
}

/**
 * Checked requests in one transaction (see ingestGroupSync); null when it
 * was rolled back, and then the caller stores each with ingestPacked.
 */
export function ingestPackedGroupSync(store: GroupingStore, reqs: PackedRequest[]): IngestOutcome[] | null {
  try {
    return store.transaction(() =>
      reqs.map((p): IngestOutcome => {
        if (p.kind === 'invalid') return p;
        const r = store.insertRowsSync(new PackedRowReader(p.rows));
        return { kind: 'ok', stored: r.stored, duplicates: r.duplicates, rejected: p.rejected, truncated: p.truncated };
      }),
    );
  } catch {
    return null;
  }
}

/** One checked request on its own, a finding the store refuses bisected out. */
export async function ingestPacked(store: FindingStore, p: PackedRequest): Promise<IngestOutcome> {
  if (p.kind === 'invalid') return p;
  return storeBisecting(store, findingsOf(unpackRows(p.rows)), p.rejected, p.truncated);
}

const findingsOf = (rows: StoreRow[]) => rows.map((r) => JSON.parse(jsonText(r)) as FindingJson);

/** A store that writes checked rows as they come (PostgreSQL). */
export interface RowStore extends FindingStore {
  insertRows(rows: StoreRow[]): Promise<InsertResult>;
}

export function isRowStore(store: FindingStore): store is RowStore {
  return typeof (store as Partial<RowStore>).insertRows === 'function';
}

export async function storeCheckedRows(store: RowStore, c: CheckedRows): Promise<IngestOutcome> {
  if (c.kind === 'invalid') return c;
  return storeRows(store, c.good, c.rejected, c.truncated);
}

async function storeRows(store: RowStore, rows: StoreRow[], rejected: Rejection[], truncated: number): Promise<IngestOutcome> {
  try {
    const r = await store.insertRows(rows);
    return { kind: 'ok', stored: r.stored, duplicates: r.duplicates, rejected, truncated };
  } catch (err) {
    if (isStoreUnavailable(err)) return { kind: 'unavailable', message: `store unavailable: ${(err as Error).message}` };
    // a finding's fault: stored again finding by finding, the refused one bisected out
    return storeBisecting(store, findingsOf(rows), rejected, truncated);
  }
}

/** A store that writes synchronously and can hold several inserts in one transaction (SQLite). */
export interface GroupingStore extends FindingStore {
  transaction<T>(fn: () => T): T;
  insertSync(findings: FindingJson[]): InsertResult;
  insertRowsSync(rows: RowSource): InsertResult;
  /** Moves the store's background upkeep (SQLite: WAL checkpoints) to a thread of its own. */
  checkpointInBackground?(): Promise<void>;
}

export function isGroupingStore(store: FindingStore): store is GroupingStore {
  return typeof (store as Partial<GroupingStore>).transaction === 'function';
}

/**
 * Several requests in one transaction, each decoded and checked just before
 * its insert (one decoded request in memory at a time). Null when the
 * transaction failed and was rolled back: then nothing of the group is
 * stored, and the caller runs each request on its own (where a finding the
 * store refuses is bisected out).
 */
export function ingestGroupSync(store: GroupingStore, bufs: Uint8Array[], limits: IngestLimits): IngestOutcome[] | null {
  try {
    return store.transaction(() =>
      bufs.map((buf): IngestOutcome => {
        const c = checkRequest(buf, limits);
        if (c.kind === 'invalid') return c;
        const r = store.insertSync(c.good);
        return { kind: 'ok', stored: r.stored, duplicates: r.duplicates, rejected: c.rejected, truncated: c.truncated };
      }),
    );
  } catch {
    return null;
  }
}
