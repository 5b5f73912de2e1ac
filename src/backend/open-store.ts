// Opens the store a --db value names: a postgres:// URL, or else a SQLite
// file (plain path or sqlite: URL). Each driver is loaded only when used.
import type { FindingStore, OpenOptions } from './store.js';

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

export function sqlitePath(url: string): string {
  return url.replace(/^sqlite:(\/\/)?/, '');
}

export async function openStore(url: string, opts: OpenOptions = {}): Promise<FindingStore> {
  if (isPostgresUrl(url)) {
    const { PostgresStore } = await import('./postgres-store.js');
    return PostgresStore.open(url, opts);
  }
  const { SqliteStore } = await import('./sqlite-store.js');
  return SqliteStore.open(sqlitePath(url), opts);
}
