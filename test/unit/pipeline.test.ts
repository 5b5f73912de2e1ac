// The pipeline's operators one by one, and the sensor's end of stream: what
// the kernel still holds at stop is drained, lookups in flight settle and
// folds are flushed before the sinks close; a failing drain or stage loses
// at most its batch and is counted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Subject, lastValueFrom, map, toArray } from 'rxjs';
import type { MetadataResolver } from '../../src/enrich/metadata.js';
import { createLogger } from '../../src/log.js';
import type { NativeLoader } from '../../src/native/loader.js';
import { decodeRecords } from '../../src/pipeline/decode-stage.js';
import type { DecodedEvent } from '../../src/pipeline/decode.js';
import { enrichEvents } from '../../src/pipeline/enrich-stage.js';
import type { Enricher } from '../../src/pipeline/enrich.js';
import type { Finding } from '../../src/pipeline/finding.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { EXEC, FRAME_HEADER, FileFlag } from '../../src/pipeline/records.js';
import { startSensor } from '../../src/pipeline/sensor.js';
import { kernelBatches, restartAfterDrainErrors, type Batch } from '../../src/pipeline/source.js';
import { DEFAULT_POLICY } from '../../src/policy/policy-file.js';
import { encodeExec, frame } from '../../src/sdk/encode.js';
import type { DetectionEvent } from '../../src/sdk/signature.js';

const UPPER_NEW = FileFlag.OVERLAY | FileFlag.OVL_UPPER_DENTRY | FileFlag.OVL_UPPER_ALIAS;
const podman = (n: number) => `libpod-${n.toString(16).padStart(64, '0')}`;
const dropped = (hostPid: number, path = `/tmp/dropped-${hostPid}`) =>
  encodeExec({ hostPid, fileFlags: UPPER_NEW, path, args: [path], cgroup: podman(1), cgroupParent: 'libpod_parent', cgroupId: 77n });

/** A ring buffer stand-in: batches pushed by the test are served by consume(); `fail` makes the next consume throw. */
function ring() {
  const queue: Buffer[] = [];
  let failures = 0;
  let consumed = 0;
  const loader: NativeLoader = {
    load() {},
    attach: () => [],
    programs: () => [],
    attachProgram: (n) => n,
    consume(buf) {
      if (failures > 0) {
        failures--;
        throw new Error('ring buffer went away');
      }
      const b = queue.shift();
      if (!b) return 0;
      b.copy(buf);
      consumed++;
      return b.length;
    },
    stats: () => ({}),
    overlayPath: () => 'module BTF',
    programStats: () => [],
    close() {},
  };
  return {
    loader,
    push: (...records: Buffer[]) => void queue.push(frame(records)),
    fail: (n = 1) => void (failures += n),
    get consumed() {
      return consumed;
    },
    get waiting() {
      return queue.length;
    },
  };
}

const lines = () => {
  const out: string[] = [];
  return { out, log: createLogger('debug', (l) => out.push(l)) };
};
const until = async (pred: () => boolean, what: string) => {
  for (let i = 0; i < 500 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(pred(), `timed out waiting for ${what}`);
};
const pids = (evs: DecodedEvent[]) => evs.map((e) => e.hostPid);
const paths = (fs: Finding[]) => fs.map((f) => f.process?.executable?.path).sort();

test('source: aborting drains everything the kernel still holds, then completes', async () => {
  const r = ring();
  const stop = new AbortController();
  // A poll interval far beyond the test: only the final drain can deliver.
  // Records are views into the reused buffer: read them while their batch is current.
  const seen = lastValueFrom(kernelBatches(r.loader, { intervalMs: 60_000, signal: stop.signal }).pipe(decodeRecords(new Metrics(), lines().log), map(pids), toArray()));
  await new Promise((res) => setTimeout(res, 20)); // the first drain found nothing
  r.push(dropped(1));
  r.push(dropped(2), dropped(3));
  stop.abort();
  const batches = await seen;
  assert.deepEqual(batches, [[1], [2, 3]]);
  assert.equal(r.waiting, 0);
});

test('source: an abort from inside a subscriber finishes after that batch is read, never refilling it meanwhile', async () => {
  const r = ring();
  const stop = new AbortController();
  r.push(dropped(1));
  r.push(dropped(2));
  const seen: Array<{ hostPid: number; intact: boolean }> = [];
  await new Promise<void>((done) =>
    kernelBatches(r.loader, { intervalMs: 60_000, signal: stop.signal }).subscribe({
      next(b: Batch) {
        const before = b.buf.subarray(0, b.length).toString('hex');
        stop.abort(); // a stage that stops the sensor while the batch is in hand
        seen.push({ hostPid: b.buf.readUInt32LE(FRAME_HEADER + EXEC.hostPid), intact: before === b.buf.subarray(0, b.length).toString('hex') });
      },
      complete: done,
    }),
  );
  assert.deepEqual(seen, [{ hostPid: 1, intact: true }, { hostPid: 2, intact: true }]);
  assert.equal(r.waiting, 0, 'the final drain still took the second batch');
});

test('source: a failed drain is counted, logged and restarted; batches after it still flow', async () => {
  const r = ring();
  const metrics = new Metrics();
  const { out, log } = lines();
  const stop = new AbortController();
  const got: number[] = [];
  const done = lastValueFrom(
    kernelBatches(r.loader, { intervalMs: 1, signal: stop.signal }).pipe(restartAfterDrainErrors(stop.signal, metrics, log, 5), decodeRecords(metrics, log), map(pids), toArray()),
  ).then((bs) => got.push(...bs.flat()));
  r.push(dropped(1));
  await until(() => r.consumed === 1, 'the first batch');
  r.fail();
  r.push(dropped(2));
  await until(() => r.consumed === 2, 'a batch after the restart');
  stop.abort();
  await done;
  assert.deepEqual(got, [1, 2]);
  assert.equal(metrics.get('pipeline_errors_total'), 1);
  assert.match(out.join(''), /pipeline error, restarting the stream: ring buffer went away/);
});

test('source: a failed final drain ends the stream (logged, counted) instead of restarting it', async () => {
  const r = ring();
  const metrics = new Metrics();
  const { out, log } = lines();
  const stop = new AbortController();
  const done = lastValueFrom(kernelBatches(r.loader, { intervalMs: 60_000, signal: stop.signal }).pipe(restartAfterDrainErrors(stop.signal, metrics, log, 5), toArray()));
  await new Promise((res) => setTimeout(res, 20));
  r.fail(1000);
  stop.abort();
  assert.deepEqual(await done, []);
  assert.equal(metrics.get('pipeline_errors_total'), 1);
  assert.match(out.join(''), /final drain failed: ring buffer went away/);
});

test('enrich stage: ready events leave with their batch, looked-up ones on their own; completion waits for every lookup', async () => {
  const metrics = new Metrics();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const container = { inContainer: true } as DetectionEvent['container'];
  // Odd pids need a lookup, even ones are ready at once; pid 100 is a host process.
  const enricher: Enricher = {
    enrich(rec) {
      const ev = { kind: 'exec', exec: rec, container: rec.hostPid === 100 ? { inContainer: false } : container } as DetectionEvent;
      return rec.hostPid % 2 ? gate.then(() => ev) : ev;
    },
  };
  const input = new Subject<DecodedEvent[]>();
  const emitted: number[][] = [];
  let completed = false;
  input.pipe(enrichEvents(enricher, { metrics, log: lines().log })).subscribe({
    next: (evs) => emitted.push(evs.map((e) => (e.kind === 'exec' ? e.exec.hostPid : -1))),
    complete: () => (completed = true),
  });
  const rec = (hostPid: number) => ({ kind: 'exec', hostPid }) as DecodedEvent;
  input.next([rec(1), rec(2), rec(100), rec(4)]);
  assert.deepEqual(emitted, [[2, 4]], 'the ready ones at once, the host one dropped');
  assert.equal(metrics.get('host_events_dropped_total'), 1);
  input.complete();
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(completed, false, 'a lookup is still in flight');
  assert.equal(metrics.snapshot().find((m) => m.name === 'enrichment_inflight')?.value, 1);
  release();
  await until(() => completed, 'completion');
  assert.deepEqual(emitted, [[2, 4], [1]]);
});

test('sensor: stop drains what the kernel still holds, waits for lookups, flushes folds, then closes the sinks', async () => {
  const r = ring();
  const found: Finding[] = [];
  let closedWith = -1;
  let release!: () => void;
  const slow = new Promise<void>((res) => (release = res));
  // Container metadata that answers only after stop() was called.
  const resolver = { metrics: {}, size: 0, resolve: () => slow.then(() => ({ runtime: 'podman', name: 'late' })) } as unknown as MetadataResolver;
  const sensor = await startSensor({
    log: lines().log, loader: r.loader, hostNamespaces: { mnt: 1, pid: 2 }, pollIntervalMs: 60_000, resolver,
    policy: { ...DEFAULT_POLICY, dedupWindowMs: 60_000 },
    sinks: [{ write: (f) => found.push(f), close: () => void (closedWith = found.length) }],
  });
  await new Promise((res) => setTimeout(res, 20)); // the first drain found nothing; the next is a minute away
  // Three execs of one dropped binary (one finding, two folded) and another one.
  r.push(dropped(11, '/tmp/a'), dropped(12, '/tmp/a'), dropped(13, '/tmp/a'), dropped(14, '/tmp/b'));
  const stopped = sensor.stop();
  await new Promise((res) => setTimeout(res, 20));
  assert.equal(found.length, 0, 'nothing is written before the lookups answer');
  release();
  await stopped;
  assert.equal(sensor.metrics.get('events_decoded_total'), 4);
  assert.deepEqual(paths(found), ['/tmp/a', '/tmp/a', '/tmp/b']);
  assert.deepEqual(found.map((f) => f.count ?? 1).sort(), [1, 1, 3], 'the summary of the three executions is flushed');
  assert.equal(found.find((f) => f.count === 3)?.foldOf, found.find((f) => f.process?.executable?.path === '/tmp/a' && f.count === 1)?.id);
  assert.ok(found.every((f) => f.container?.name === 'late'), 'enriched with what the lookup answered');
  assert.equal(closedWith, 3, 'sinks close after the last finding');
});

test('sensor: a failed drain and a stage that throws lose at most their batch; counted, and the stream goes on', async () => {
  const r = ring();
  const found: Finding[] = [];
  const { out, log } = lines();
  let calls = 0;
  // A metadata source with a bug: it throws (not rejects) on its second call.
  const resolver = {
    metrics: {}, size: 0,
    resolve: () => {
      if (++calls === 2) throw new TypeError('resolver bug');
      return Promise.resolve(null);
    },
  } as unknown as MetadataResolver;
  const sensor = await startSensor({
    log, loader: r.loader, hostNamespaces: { mnt: 1, pid: 2 }, pollIntervalMs: 1, resolver,
    policy: { ...DEFAULT_POLICY, dedupWindowMs: 0 },
    sinks: [{ write: (f) => found.push(f), close() {} }],
  });
  r.push(dropped(21));
  await until(() => found.length === 1, 'the first finding');
  r.fail();
  r.push(dropped(22)); // its enrichment throws
  r.push(dropped(23));
  await until(() => found.length === 2, 'a finding after both failures');
  await sensor.stop();
  assert.deepEqual(paths(found), ['/tmp/dropped-21', '/tmp/dropped-23']);
  assert.equal(sensor.metrics.get('pipeline_errors_total'), 2);
  assert.match(out.join(''), /pipeline error, restarting the stream: ring buffer went away/);
  assert.match(out.join(''), /enrich stage failed, the rest of its batch is dropped: resolver bug/);
});

test('sensor: a reload swaps signatures and policy for the next batch; the policy is kept when only signatures change', async () => {
  const r = ring();
  const found: Finding[] = [];
  const sensor = await startSensor({
    log: lines().log, loader: r.loader, hostNamespaces: { mnt: 1, pid: 2 }, pollIntervalMs: 1,
    sinks: [{ write: (f) => found.push(f), close() {} }],
  });
  const excepting = { ...DEFAULT_POLICY, dedupWindowMs: 0, exceptions: [{ executable: '/tmp/ok-*', reason: 'test' }] };
  sensor.reload({ policy: excepting });
  sensor.reload({ signatures: sensor.signatures });
  r.push(dropped(31, '/tmp/ok-1'), dropped(32, '/tmp/bad-1'));
  await until(() => sensor.metrics.get('events_decoded_total') === 2, 'the batch');
  await sensor.stop();
  assert.deepEqual(paths(found), ['/tmp/bad-1']);
  assert.equal(sensor.metrics.total('policy_excepted_total'), 1);
  assert.equal(sensor.metrics.get('reloads_total'), 2);
});
