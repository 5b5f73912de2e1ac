// The heap keeper against this process's real V8 heap: a settle gives the
// young generation's pages back (and trims the C heap), a quiet pipeline
// settles once and then sleeps, and old-generation growth while busy starts a
// full collection. Time is a manual clock: the quiet rules are decided by
// steps, not by how long this machine's timers take to fire.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { HeapKeeper, oldSpaceUsed, youngSpaceBytes, type HeapKeeperOptions, type KeeperTimers } from '../../src/pipeline/heap-keeper.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { loadAddon } from '../../src/native/loader.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (o: { type: 'minor' | 'major'; execution: 'sync' }) => void;
const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.physical_space_size;
const collections = (m: Metrics, reason: string) => m.snapshot().find((e) => e.name === 'heap_collections_total' && e.labels['reason'] === reason)?.value;

/** A clock that moves only when told; due callbacks run in time order as it passes them. */
class ManualTimers implements KeeperTimers {
  private t = 0;
  private due: Array<{ at: number; fn: () => void; live: boolean }> = [];
  now(): number {
    return this.t;
  }
  after(ms: number, fn: () => void): () => void {
    const entry = { at: this.t + ms, fn, live: true };
    this.due.push(entry);
    return () => (entry.live = false);
  }
  get pending(): number {
    return this.due.filter((e) => e.live).length;
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const next = this.due.filter((e) => e.live && e.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      next.live = false;
      this.t = next.at;
      next.fn();
    }
    this.due = this.due.filter((e) => e.live);
    this.t = end;
  }
}

/** One keeper on a manual clock, its metrics and its trims; closed after fn, also when fn throws. */
async function withKeeper(opts: HeapKeeperOptions, fn: (k: { keeper: HeapKeeper; metrics: Metrics; timers: ManualTimers; trims: () => number }) => void | Promise<void>): Promise<void> {
  const metrics = new Metrics();
  const timers = new ManualTimers();
  let trims = 0;
  const keeper = new HeapKeeper({ metrics, timers, trimNative: () => void trims++, ...opts });
  try {
    await fn({ keeper, metrics, timers, trims: () => trims });
  } finally {
    keeper.close();
  }
  assert.equal(timers.pending, 0, 'close() leaves no timer behind');
}

/** Objects that live across scavenges (so V8 grows the young generation), then die. */
function churn(rounds: number): void {
  let keep: Array<{ i: number; s: string }> = [];
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < 100_000; i++) keep.push({ i, s: `x${i}` });
    if (keep.length > 300_000) keep = keep.slice(-100_000);
  }
  keep.length = 0;
}

test('settle: the young generation shrinks, its pages go back, the C heap is trimmed', async () => {
  churn(30);
  const before = newSpace();
  assert.ok(before >= 4 << 20, `young generation grew to ${before} bytes`);
  await withKeeper({}, ({ keeper, metrics, trims }) => {
    keeper.settle();
    const after = newSpace();
    assert.ok(after <= before / 2, `young generation ${before} -> ${after} bytes`);
    assert.equal(collections(metrics, 'quiet'), 1);
    assert.equal(trims(), 1);
  });
});

test('mallocTrim: free pages in the middle of the C heap go back to the kernel', () => {
  const rssAnonMiB = () => Number(/RssAnon:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
  // 31 MiB of 16 KiB buffers (malloc'ed, below the mmap threshold), one in 100 kept: the rest is
  // freed between live chunks, where glibc does not return it by itself.
  let buffers: Buffer[] | undefined = Array.from({ length: 2000 }, () => Buffer.alloc(16 << 10, 1));
  const kept = buffers.filter((_, i) => i % 100 === 99);
  buffers = undefined;
  // The second collection finishes the first one's sweep of array buffers (their free()).
  gc({ type: 'major', execution: 'sync' });
  gc({ type: 'major', execution: 'sync' });
  const before = rssAnonMiB();
  assert.equal(loadAddon().mallocTrim(), true);
  const after = rssAnonMiB();
  assert.ok(before - after >= 16, `private memory ${before.toFixed(1)} -> ${after.toFixed(1)} MiB`);
  assert.equal(kept.length, 20);
});

// Each step: a batch arrives, or the clock moves; then the quiet collections so far.
type Step = ['batch', number] | ['wait', number, number];
const quietCases: Array<{ name: string; opts: () => HeapKeeperOptions; steps: Step[] }> = [
  {
    name: 'one settle after the last batch, none while batches keep coming, none while idle after it, again after the next burst',
    opts: () => ({ quietMs: 150, checkMs: 60_000, minYoungBytes: 0 }),
    steps: [
      ['batch', 0], ['wait', 50, 0], ['batch', 0], ['wait', 50, 0], ['batch', 0], ['wait', 50, 0],
      ['batch', 0], ['wait', 50, 0], ['batch', 0], ['wait', 50, 0], ['batch', 0],
      ['wait', 149, 0], // not yet quiet for quietMs
      ['wait', 1, 1], // quiet: one settle
      ['wait', 10_000, 1], // idle: no other
      ['batch', 1], ['wait', 150, 2], // the next burst settles again
    ],
  },
  {
    name: 'after start-up always; later, nothing to give back (a small young generation, no old growth): no collection',
    opts: () => ({ quietMs: 50, checkMs: 60_000, minYoungBytes: youngSpaceBytes() + (64 << 20) }),
    steps: [['batch', 0], ['wait', 49, 0], ['wait', 1, 1], ['batch', 1], ['wait', 50, 1], ['wait', 10_000, 1]],
  },
];

for (const c of quietCases) {
  test(`quiet: ${c.name}`, async () => {
    await withKeeper(c.opts(), ({ keeper, metrics, timers, trims }) => {
      assert.equal(collections(metrics, 'quiet'), 0);
      c.steps.forEach((step, i) => {
        if (step[0] === 'batch') keeper.activity();
        else timers.advance(step[1]);
        const want = step[0] === 'batch' ? step[1] : step[2];
        assert.equal(collections(metrics, 'quiet'), want, `after step ${i} (${step.join(' ')})`);
        assert.equal(trims(), want, 'each settle trims the C heap once');
      });
    });
  });
}

test('busy: old-generation growth past the bound starts a full collection, at most once per check', async () => {
  gc({ type: 'major', execution: 'sync' }); // the earlier tests' garbage is not this test's baseline
  await withKeeper({ quietMs: 60_000, checkMs: 0, oldGrowthBytes: 4 << 20 }, async ({ keeper, metrics }) => {
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
    await keeper.collected();
    assert.ok(oldSpaceUsed() < grown - (4 << 20), `old generation ${grown} -> ${oldSpaceUsed()} bytes`);
  });
});
