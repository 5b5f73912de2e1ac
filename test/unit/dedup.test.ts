// Dedup folds only repeats of the same file: the dedup key holds the file's
// identity (content hash, else the kernel's device, inode and ctime), and the
// summary keeps what varied. The backend store applies the summary to the
// first finding, so a group is one stored finding with its count.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SqliteStore } from '../../src/backend/sqlite-store.js';
import type { Finding } from '../../src/pipeline/finding.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { Deduplicator, dedupKey } from '../../src/report/dedup.js';

interface Over {
  sha?: string;
  inode?: string;
  ctime?: string;
  path?: string;
  args?: string[];
  time?: string;
  sig?: string;
  cid?: string;
}

let seq = 0;
const finding = (o: Over = {}): Finding => ({
  id: `00000000-0000-0000-0000-${String(++seq).padStart(12, '0')}`,
  time: o.time ?? '2026-01-01T00:00:00.000Z',
  signature: { id: o.sig ?? 'drift.new_executable', name: 'n', severity: 'CRITICAL' },
  process: {
    args: o.args ?? ['/tmp/x'],
    executable: {
      path: o.path ?? '/tmp/x',
      layer: 'UPPER_NEW',
      device: '0:52',
      inode: o.inode ?? '100',
      ctime: o.ctime ?? '2026-01-01T00:00:00.000Z',
      ...(o.sha ? { sha256: o.sha } : {}),
    },
  },
  container: { id: o.cid ?? 'c'.repeat(64) },
  host: { hostname: 'h' },
  count: 1,
  firstSeen: o.time ?? '2026-01-01T00:00:00.000Z',
  lastSeen: o.time ?? '2026-01-01T00:00:00.000Z',
});

function dedup(windowMs = 3_600_000, maxDistinctArgs?: number) {
  const out: Finding[] = [];
  const metrics = new Metrics();
  const d = new Deduplicator({ windowMs, ...(maxDistinctArgs ? { maxDistinctArgs } : {}) }, metrics, (f) => out.push(f));
  return { out, metrics, d };
}

const HELLO = 'a'.repeat(64);
const BUSYBOX = '3d9f2889'.padEnd(64, 'b');

test('dedup: another binary swapped in at the same path within the window is its own finding with its own hash', () => {
  const { out, d } = dedup();
  d.add(finding({ sha: HELLO, inode: '100', args: ['/tmp/x'] }));
  d.add(finding({ sha: BUSYBOX, inode: '101', args: ['/tmp/x', 'true'] }));
  assert.deepEqual(out.map((f) => f.process?.executable?.sha256), [HELLO, BUSYBOX], 'both go out at once');
  d.flush();
  assert.equal(out.length, 2, 'nothing was folded, so no summary');
});

test('dedup: without a hash, the kernel identity decides; same inode rewritten in place (new ctime) does not fold', () => {
  const { out, d } = dedup();
  d.add(finding({ inode: '100', ctime: '2026-01-01T00:00:00.000Z' }));
  d.add(finding({ inode: '100', ctime: '2026-01-01T00:00:05.000Z' })); // truncated and rewritten
  d.add(finding({ inode: '102', ctime: '2026-01-01T00:00:00.000Z' })); // removed and recreated
  d.add(finding({ inode: '100', ctime: '2026-01-01T00:00:00.000Z' })); // a true repeat
  assert.equal(out.length, 3);
  d.flush();
  assert.equal(out.length, 4);
  assert.equal(out[3]!.count, 2);
  assert.equal(out[3]!.foldOf, out[0]!.id);
});

test('dedup: the same content copied to new inodes folds (the hash is the identity when known)', () => {
  const { out, d } = dedup();
  d.add(finding({ sha: HELLO, inode: '100' }));
  d.add(finding({ sha: HELLO, inode: '200' }));
  d.flush();
  assert.equal(out.length, 2);
  assert.equal(out[1]!.count, 2);
});

test('dedup: 1,000 runs of one binary are one finding now and one summary with count 1,000', () => {
  const { out, metrics, d } = dedup();
  for (let i = 0; i < 1000; i++) d.add(finding({ sha: HELLO, time: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, i)).toISOString() }));
  assert.equal(out.length, 1);
  assert.equal(metrics.total('findings_folded_total'), 999);
  d.flush();
  assert.equal(out.length, 2);
  const [first, summary] = out as [Finding, Finding];
  assert.equal(summary.count, 1000);
  assert.equal(summary.foldOf, first.id);
  assert.notEqual(summary.id, first.id);
  assert.equal(summary.firstSeen, '2026-01-01T00:00:00.000Z');
  assert.equal(summary.lastSeen, '2026-01-01T00:00:00.999Z');
  assert.deepEqual(summary.distinctArgs, [{ args: ['/tmp/x'], count: 1000 }]);
  assert.equal(summary.argsOmitted, undefined);
});

test('dedup: differing args are kept up to the cap, the rest counted', () => {
  const { out, d } = dedup(3_600_000, 3);
  const runs = [['a'], ['b'], ['a'], ['c'], ['d'], ['e'], ['d'], ['b']];
  for (const a of runs) d.add(finding({ sha: HELLO, args: ['/tmp/x', ...a] }));
  d.flush();
  const summary = out[1]!;
  assert.equal(summary.count, 8);
  assert.deepEqual(summary.distinctArgs, [
    { args: ['/tmp/x', 'a'], count: 2 },
    { args: ['/tmp/x', 'b'], count: 2 },
    { args: ['/tmp/x', 'c'], count: 1 },
  ]);
  assert.equal(summary.argsOmitted, 3, 'd, e, d: executions whose args were beyond the cap');
});

test('dedup: the key keeps container, signature and path apart; window 0 reports every finding', () => {
  const base = dedupKey(finding({ sha: HELLO }));
  assert.notEqual(dedupKey(finding({ sha: HELLO, cid: 'd'.repeat(64) })), base);
  assert.notEqual(dedupKey(finding({ sha: HELLO, sig: 'drift.tmpfs_exec' })), base);
  assert.notEqual(dedupKey(finding({ sha: HELLO, path: '/tmp/y' })), base);
  assert.notEqual(dedupKey(finding({ sha: BUSYBOX })), base);
  assert.equal(dedupKey(finding({ sha: HELLO, args: ['other'] })), base, 'args are not in the key');
  const { out, d } = dedup(0);
  for (let i = 0; i < 3; i++) d.add(finding({ sha: HELLO }));
  assert.equal(out.length, 3);
});

test('dedup: a window that ends summarises on its own timer', async () => {
  const { out, d } = dedup(30);
  d.add(finding({ sha: HELLO }));
  d.add(finding({ sha: HELLO }));
  for (let i = 0; i < 100 && out.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(out.length, 2);
  assert.equal(out[1]!.count, 2);
  d.add(finding({ sha: HELLO }));
  assert.equal(out.length, 3, 'after the window a repeat is reported again');
  d.flush();
});

test('backend store: a summary updates its first finding, stored once however often it is sent', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dedup-store-'));
  const store = SqliteStore.open(join(dir, 'f.db'));
  try {
    const { out, d } = dedup(3_600_000, 2);
    for (let i = 0; i < 1000; i++) d.add(finding({ sha: HELLO, args: ['/tmp/x', String(i % 3)], time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString() }));
    d.add(finding({ sha: BUSYBOX, args: ['/tmp/x', 'payload'] }));
    d.flush();
    assert.equal(out.length, 3);
    assert.deepEqual(await store.insert(out), { stored: 3, duplicates: 0 });
    assert.deepEqual(await store.insert(out), { stored: 0, duplicates: 3 }, 'a retried batch changes nothing');
    const rows = await store.query({});
    assert.equal(rows.length, 2, 'one finding per binary');
    const hello = rows.find((r) => r.process?.executable?.sha256 === HELLO)!;
    assert.equal(hello.count, 1000);
    assert.equal(hello.lastSeen, new Date(Date.UTC(2026, 0, 1, 0, 0, 999)).toISOString());
    assert.deepEqual(hello.distinctArgs?.map((a) => a.count), [334, 333]);
    assert.equal(hello.argsOmitted, 333);
    const payload = rows.find((r) => r.process?.executable?.sha256 === BUSYBOX)!;
    assert.equal(payload.count, 1);
    assert.deepEqual(payload.process?.args, ['/tmp/x', 'payload']);
    // A summary whose first finding never arrived is stored as a finding of its own.
    const orphan = { ...out[2]!, id: '11111111-0000-0000-0000-000000000000', foldOf: '22222222-0000-0000-0000-000000000000' };
    assert.deepEqual(await store.insert([orphan]), { stored: 1, duplicates: 0 });
    assert.equal(await store.count(), 3);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
