// Table-driven tests of the built-in stream signatures on virtual time: each
// row is a timeline of kernel records (at ms on the TestScheduler's clock)
// and the findings it must give.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TestScheduler } from 'rxjs/testing';
import { bufferTime, filter, map, mergeMap, throwError } from 'rxjs';
import { SignatureEngine } from '../../src/pipeline/engine.js';
import { BootClock, type Finding } from '../../src/pipeline/finding.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { FileFlag as F } from '../../src/pipeline/records.js';
import driftBurst from '../../src/signatures/drift-burst.js';
import interactiveIntrusion from '../../src/signatures/interactive-intrusion.js';
import newExecutable from '../../src/signatures/new-executable.js';
import { defineStreamSignature, type DetectionEvent } from '../../src/sdk/signature.js';
import { runSignatures, type RecordSpec, type TestEvent } from '../../src/sdk/testing.js';
import { decodeRecord } from '../../src/pipeline/decode.js';
import { encodeExec } from '../../src/sdk/encode.js';
import { detect } from '../../src/pipeline/signature-stage.js';
import { createLogger } from '../../src/log.js';

const IMAGE = F.OVERLAY | F.OVL_LAYOUT_FSDATA;
const UPPER = F.OVERLAY | F.OVL_UPPER_DENTRY | F.OVL_UPPER_ALIAS | F.OVL_LAYOUT_FSDATA;
const C1 = { cgroup: 'libpod-' + 'a'.repeat(64), cgroupParent: 'libpod_parent' };
const C2 = { cgroup: 'libpod-' + 'b'.repeat(64), cgroupParent: 'libpod_parent' };
const SESSION_INIT = 1;
const SESSION_EXEC = 2;
const MIN = 60_000;

const sessionExec = (at: number, c = C1, leader = 500): TestEvent => ({ at, record: { ...c, fileFlags: IMAGE, path: '/bin/sh', session: SESSION_EXEC, sessionHostPid: leader } });
const drift = (at: number, inode: number, c = C1, extra: RecordSpec = {}): TestEvent => ({
  at,
  record: { ...c, fileFlags: UPPER, inode: BigInt(inode), path: `/tmp/tool-${inode}`, session: SESSION_INIT, ...extra },
});

const ids = (fs: Finding[], id: string) => fs.filter((f) => f.signature!.id === id);

const intrusionRows: Array<[string, TestEvent[], number]> = [
  ['drift 1 min after an exec session', [sessionExec(0), drift(MIN, 1)], 1],
  ['drift 11 min after the session (window is 10)', [sessionExec(0), drift(11 * MIN, 1)], 0],
  ['the session kept going, so the window was renewed', [sessionExec(0), sessionExec(9 * MIN), drift(18 * MIN, 1)], 1],
  ['drift with no exec session', [drift(0, 1), drift(MIN, 2)], 0],
  ['drift before the session opened', [drift(0, 1), sessionExec(MIN)], 0],
  ['session in one container, drift in another', [sessionExec(0, C1), drift(MIN, 1, C2)], 0],
  ['one finding per session however much drift follows', [sessionExec(0), drift(1000, 1), drift(2000, 2), drift(3000, 3)], 1],
  ['a second session in the same container is reported again', [sessionExec(0, C1, 500), drift(1000, 1), sessionExec(2000, C1, 600), drift(3000, 2)], 2],
  ['the drifted exec itself came from the session', [drift(0, 1, C1, { session: SESSION_EXEC, sessionHostPid: 77 })], 1],
  ['an image binary after the session is not drift', [sessionExec(0), { at: 1000, record: { ...C1, fileFlags: IMAGE, path: '/bin/ls' } }], 0],
  ['a copied-up image binary is drift', [sessionExec(0), drift(1000, 1, C1, { fileFlags: UPPER | F.OVL_HAS_LOWER })], 1],
];

for (const [name, events, expected] of intrusionRows) {
  test(`interactive intrusion: ${name} → ${expected}`, () => {
    const { findings, errors } = runSignatures([interactiveIntrusion], events);
    assert.equal(errors, 0);
    assert.equal(findings.length, expected, JSON.stringify(findings.map((f) => f.process!.executable!.path)));
    for (const f of findings) {
      assert.equal(f.signature!.id, 'drift.interactive_intrusion');
      assert.match(f.process!.executable!.path!, /^\/tmp\/tool-/, 'the finding is about the drifted executable');
    }
  });
}

const burst = (n: number, every: number, c = C1, from = 0, inode0 = 1): TestEvent[] => Array.from({ length: n }, (_, i) => drift(from + i * every, inode0 + i, c));

const burstRows: Array<[string, TestEvent[], number]> = [
  ['10 distinct drifted executables in 9 s', burst(10, 1000), 1],
  ['9 distinct is below the threshold', burst(9, 1000), 0],
  ['10 spread over 10 minutes', burst(10, MIN), 0],
  ['the same file 20 times is one executable', Array.from({ length: 20 }, (_, i) => drift(i * 100, 1)), 0],
  ['one file renamed 10 times is still one (dev and inode, not path)', Array.from({ length: 10 }, (_, i) => drift(i * 100, 1, C1, { path: `/tmp/name-${i}` })), 0],
  ['5 in each of two containers', [...burst(5, 100, C1), ...burst(5, 100, C2, 0, 100)], 0],
  ['20 in a row are two bursts', burst(20, 100), 2],
  ['image binaries do not count', Array.from({ length: 12 }, (_, i) => ({ at: i * 10, record: { ...C1, fileFlags: IMAGE, inode: BigInt(i), path: `/bin/x${i}` } })), 0],
];

for (const [name, events, expected] of burstRows) {
  test(`drift burst: ${name} → ${expected}`, () => {
    const { findings, errors } = runSignatures([driftBurst], events);
    assert.equal(errors, 0);
    assert.equal(findings.length, expected);
    for (const f of findings) assert.equal(f.signature!.data!['distinct'], '10');
  });
}

test('stream and per-event signatures run side by side in the harness', () => {
  const { findings } = runSignatures([interactiveIntrusion, driftBurst, newExecutable], [sessionExec(0), ...burst(10, 10, C1, 1000)]);
  assert.equal(ids(findings, 'drift.new_executable').length, 10);
  assert.equal(ids(findings, 'drift.interactive_intrusion').length, 1);
  assert.equal(ids(findings, 'drift.burst').length, 1);
});

// A stream signature that counts drift per 5 s window: what the engine owes
// it is shown as a marble diagram on the engine's finding stream.
const perWindow = defineStreamSignature({
  id: 'test.per_window', name: 'per window', version: '1', description: '', severity: 'LOW', events: ['exec'],
  detect: (events) =>
    events.pipe(
      bufferTime(5000),
      filter((evs) => evs.length > 0),
      map((evs) => ({ event: evs.at(-1)!, data: { n: String(evs.length) } })),
    ),
});

const detection = (inode: number): DetectionEvent => {
  const exec = decodeRecord(encodeExec({ ...C1, fileFlags: UPPER, inode: BigInt(inode) }));
  return { kind: 'exec', exec: exec as never, container: { inContainer: true, id: 'a'.repeat(64) } };
};

test('engine: stream findings come on the virtual clock; closing flushes the open window', () => {
  new TestScheduler((a, b) => assert.deepEqual(a, b)).run(({ cold, expectObservable }) => {
    const engine = new SignatureEngine([perWindow], { hostname: 'h', clock: new BootClock(), metrics: new Metrics() });
    // events at 1, 2 and 6 s; the engine is closed at 7 s with the second window open
    cold('1s a 999ms b 3999ms c 999ms |', { a: 1, b: 2, c: 3 }).subscribe({ next: (i) => engine.dispatch(detection(i)), complete: () => engine.close() });
    expectObservable(engine.streamFindings.pipe(map((f) => f.signature!.data!['n']))).toBe('5s a 1999ms (b|)', { a: '2', b: '1' });
  });
});

test('engine: a stream signature that fails is counted, disabled and logged by name; the others go on', () => {
  const broken = defineStreamSignature({
    id: 'test.broken', name: 'broken', version: '1', description: '', severity: 'LOW', events: ['exec'],
    detect: (events) => events.pipe(mergeMap(() => throwError(() => new Error('boom')))),
  });
  const metrics = new Metrics();
  const logs: string[] = [];
  const engine = new SignatureEngine([broken, newExecutable], { hostname: 'h', clock: new BootClock(), metrics, log: (m) => logs.push(m) });
  let completed = false;
  engine.streamFindings.subscribe({ complete: () => (completed = true) });
  assert.equal(engine.dispatch(detection(1)).length, 1);
  assert.equal(engine.dispatch(detection(2)).length, 1);
  assert.equal(metrics.get('signatures_disabled_total', { signature: 'test.broken' }), 1);
  assert.equal(metrics.get('signature_errors_total', { signature: 'test.broken' }), 1);
  assert.match(logs.join('\n'), /test\.broken.*boom/);
  engine.close();
  assert.ok(completed, 'the finding stream completes on close though a signature failed');
});

test('signatures stage: stream findings join the output; it completes after the open window flushed, and a reload flushes the old engine', () => {
  new TestScheduler((a, b) => assert.deepEqual(a, b)).run(({ cold, expectObservable }) => {
    const make = () => new SignatureEngine([perWindow, newExecutable], { hostname: 'h', clock: new BootClock(), metrics: new Metrics() });
    let engine = make();
    const batches = cold('a 999ms b 999ms r 999ms c|', { a: [detection(1)], b: [detection(2)], r: [], c: [detection(3)] });
    const swapped = cold('2s x').pipe(map(() => engine.close())); // reload at 2 s: the old engine's window (2 events) flushes
    swapped.subscribe(() => (engine = make()));
    const out = batches.pipe(
      detect(() => engine, new Metrics(), createLogger('error', () => {})),
      map((fs) => fs.map((f) => (f.signature!.id === 'drift.new_executable' ? 'exec' : `window of ${f.signature!.data!['n']}`)).join()),
    );
    expectObservable(out).toBe('e 999ms e 999ms v 999ms e (w|)', { e: 'exec', v: 'window of 2', w: 'window of 1' });
  });
});
