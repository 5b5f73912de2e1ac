// An idle sensor sleeps: the kernel wakes user space only for the first
// record after the ring buffer was empty, and the source drains nothing
// until then. Real kernel, the benchmark generator as the producer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { firstValueFrom, take, toArray } from 'rxjs';
import { createLoader, type NativeLoader } from '../../src/native/loader.js';
import { kernelBatches } from '../../src/pipeline/source.js';
import { kernelSkipReason } from '../helpers/minicontainer.js';

const skip = kernelSkipReason();
if (skip) console.log(`# ring wakeup tests skipped: ${skip}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('watch: called once per arm, only when records wait', { skip: skip ?? false }, async () => {
  const loader = createLoader({ benchGenerator: true, ringBufferBytes: 1 << 20 });
  try {
    loader.load();
    let calls = 0;
    let wake: () => void = () => {};
    loader.watch!(() => {
      calls++;
      wake();
    });
    loader.arm!();
    await sleep(300);
    assert.equal(calls, 0, 'an empty ring wakes nobody');
    const woken = new Promise<void>((r) => (wake = r));
    assert.equal(loader.benchGenerate!(10).written, 10);
    await woken;
    assert.equal(calls, 1);
    loader.benchGenerate!(10); // not armed: no second call
    await sleep(200);
    assert.equal(calls, 1, 'one call per arm');
    const again = new Promise<void>((r) => (wake = r));
    loader.arm!(); // records are still there: level-triggered, called at once
    await again;
    assert.equal(calls, 2);
    const buf = Buffer.alloc(1 << 20);
    assert.ok(loader.consume(buf) > 0);
    loader.unwatch!();
  } finally {
    loader.close();
  }
});

test('source: no drain while the ring is empty; records still delivered', { skip: skip ?? false }, async () => {
  const loader = createLoader({ benchGenerator: true, ringBufferBytes: 1 << 20 });
  try {
    loader.load();
    let drains = 0;
    const counted: NativeLoader = {
      load: () => loader.load(), attach: () => loader.attach(), programs: () => loader.programs(), attachProgram: (n) => loader.attachProgram(n),
      stats: () => loader.stats(), programStats: () => loader.programStats(), overlayPath: () => loader.overlayPath(), close: () => loader.close(),
      consume: (b: Buffer) => (drains++, loader.consume(b)),
      watch: (f: () => void) => loader.watch!(f),
      arm: () => loader.arm!(),
      unwatch: () => loader.unwatch!(),
    };
    const ac = new AbortController();
    const batches = firstValueFrom(kernelBatches(counted, { intervalMs: 10, signal: ac.signal }).pipe(take(1), toArray()));
    await sleep(1000);
    // Polling every 10 ms would have drained ~100 times.
    assert.ok(drains <= 2, `idle drains in 1 s: ${drains}`);
    loader.benchGenerate!(100);
    const got = await batches;
    assert.equal(got.length, 1);
    assert.ok(got[0]!.length > 0, 'the wakeup led to a drain with the records');
    ac.abort();
  } finally {
    loader.close();
  }
});
