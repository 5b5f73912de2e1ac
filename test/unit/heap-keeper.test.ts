// The heap keeper against this process's real V8 heap: a settle gives the
// young generation's pages back, a quiet pipeline settles once and then
// sleeps, and old-generation growth while busy starts a full collection.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { HeapKeeper, oldSpaceUsed, youngSpaceBytes } from '../../src/pipeline/heap-keeper.js';
import { Metrics } from '../../src/pipeline/metrics.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (o: { type: 'minor' | 'major'; execution: 'sync' }) => void;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.physical_space_size;
const collections = (m: Metrics, reason: string) => m.snapshot().find((e) => e.name === 'heap_collections_total' && e.labels['reason'] === reason)?.value;

/** Objects that live across scavenges (so V8 grows the young generation), then die. */
function churn(rounds: number): void {
  let keep: Array<{ i: number; s: string }> = [];
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < 100_000; i++) keep.push({ i, s: `x${i}` });
    if (keep.length > 300_000) keep = keep.slice(-100_000);
  }
  keep.length = 0;
}

test('settle: the young generation shrinks and its pages go back', () => {
  churn(30);
  const before = newSpace();
  assert.ok(before >= 4 << 20, `young generation grew to ${before} bytes`);
  const metrics = new Metrics();
  const keeper = new HeapKeeper({ metrics });
  keeper.settle();
  keeper.close();
  const after = newSpace();
  assert.ok(after <= before / 2, `young generation ${before} -> ${after} bytes`);
  assert.equal(collections(metrics, 'quiet'), 1);
});

test('quiet: one settle after the last batch, none while batches keep coming, none while idle after it', async () => {
  const metrics = new Metrics();
  const keeper = new HeapKeeper({ metrics, quietMs: 150, checkMs: 60_000, minYoungBytes: 0 });
  try {
    assert.equal(collections(metrics, 'quiet'), 0);
    for (let i = 0; i < 6; i++) {
      keeper.activity();
      await sleep(50);
    }
    assert.equal(collections(metrics, 'quiet'), 0, 'batches every 50 ms are not quiet');
    await sleep(250);
    assert.equal(collections(metrics, 'quiet'), 1);
    await sleep(400);
    assert.equal(collections(metrics, 'quiet'), 1, 'an idle pipeline is not collected again');
    keeper.activity();
    await sleep(300);
    assert.equal(collections(metrics, 'quiet'), 2, 'the next burst settles again');
  } finally {
    keeper.close();
  }
});

test('quiet: nothing to give back (a small young generation, no old growth), no collection', async () => {
  const metrics = new Metrics();
  const settled = new HeapKeeper({ metrics });
  settled.settle(); // young generation at its minimum
  settled.close();
  const keeper = new HeapKeeper({ metrics, quietMs: 50, checkMs: 60_000, minYoungBytes: youngSpaceBytes() + (1 << 20) });
  try {
    keeper.activity();
    await sleep(300);
    assert.equal(collections(metrics, 'quiet'), 1, 'only the explicit settle');
  } finally {
    keeper.close();
  }
});

test('busy: old-generation growth past the bound starts a full collection, at most once per check', async () => {
  gc({ type: 'major', execution: 'sync' }); // the earlier tests' garbage is not this test's baseline
  const metrics = new Metrics();
  const keeper = new HeapKeeper({ metrics, quietMs: 60_000, checkMs: 0, oldGrowthBytes: 4 << 20 });
  try {
    keeper.activity();
    assert.equal(collections(metrics, 'old_growth'), 0, 'no growth yet');
    // Promote ~10 MiB (two scavenges survived), then drop it: old-generation garbage.
    let promoted: Array<{ i: number; s: string }> | undefined = [];
    for (let i = 0; i < 150_000; i++) promoted.push({ i, s: `promoted-${i}` });
    gc({ type: 'minor', execution: 'sync' });
    gc({ type: 'minor', execution: 'sync' });
    const grown = oldSpaceUsed();
    assert.equal(promoted.length, 150_000); // alive across both scavenges (a dead variable would not be)
    promoted = undefined;
    keeper.activity();
    keeper.activity(); // still collecting: not another one
    assert.equal(collections(metrics, 'old_growth'), 1);
    for (let i = 0; i < 100 && oldSpaceUsed() >= grown - (4 << 20); i++) await sleep(20);
    assert.ok(oldSpaceUsed() < grown - (4 << 20), `old generation ${grown} -> ${oldSpaceUsed()} bytes`);
  } finally {
    keeper.close();
  }
});
