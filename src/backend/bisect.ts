// A store error that is one finding's fault must not fail the batch (the
// sensor would retry it forever, in order, and nothing behind it would be
// stored). When a batch fails with such an error, it is split in halves until
// the finding that fails is alone; it is rejected and the rest are stored.
// Errors of the store itself (connection, disk) fail the batch, to be retried.
import type { FindingJson } from '#gen/finding-json.js';
import type { FindingStore, InsertResult } from './store.js';

export interface StoreOutcome extends InsertResult {
  failed: Array<{ id: string; reason: string }>;
}

/** PostgreSQL SQLSTATE classes and SQLite codes that are the store's fault, not the data's. */
export function isStoreUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; errcode?: unknown; message?: string };
  if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
    // 08 connection, 53 resources, 57 operator intervention, 58 system, XX internal, 40 rollback (after retries)
    return /^(08|53|57|58|XX|40)/.test(e.code);
  }
  if (typeof e.errcode === 'number') {
    // SQLITE_BUSY 5, LOCKED 6, NOMEM 7, READONLY 8, IOERR 10, CORRUPT 11, FULL 13, CANTOPEN 14
    return [5, 6, 7, 8, 10, 11, 13, 14].includes(e.errcode & 0xff);
  }
  // anything without a code is the driver's or the network's
  return true;
}

export async function insertBisecting(store: FindingStore, findings: FindingJson[]): Promise<StoreOutcome> {
  try {
    return { ...(await store.insert(findings)), failed: [] };
  } catch (err) {
    if (isStoreUnavailable(err)) throw err;
    if (findings.length === 1) return { stored: 0, duplicates: 0, failed: [{ id: findings[0]!.id!, reason: (err as Error).message }] };
  }
  const half = findings.length >> 1;
  const a = await insertBisecting(store, findings.slice(0, half));
  const b = await insertBisecting(store, findings.slice(half));
  return { stored: a.stored + b.stored, duplicates: a.duplicates + b.duplicates, failed: [...a.failed, ...b.failed] };
}
