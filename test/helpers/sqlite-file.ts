// A test body that gets the path of a fresh SQLite file in a directory of its
// own, removed afterwards whatever the test did.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function withSqliteFile(prefix: string, fn: (path: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), `driftwatch-${prefix}-`));
    try {
      await fn(join(dir, 'findings.db'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}
