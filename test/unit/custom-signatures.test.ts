// Loading custom signature modules: good ones load (TypeScript without a
// build), bad ones are reported with the file and the reason.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { loadCustomSignatures } from '../../src/signatures/load-custom.js';
import { builtinSignatures } from '../../src/signatures/index.js';
import { runSignatures } from '../../src/sdk/testing.js';
import { FileFlag } from '../../src/pipeline/records.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
let dir: string;

const sig = (id: string, extra = '') => `
import { defineSignature } from 'driftwatch/sdk';
export default defineSignature({
  id: '${id}', name: 'n', version: '1', description: 'd', severity: 'LOW', events: ['exec'],
  onEvent(event, ctx) { ${extra || "if (event.exec.path.startsWith('/tmp/')) ctx.emit();"} },
});`;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dw-custom-'));
  writeFileSync(join(dir, 'good.ts'), sig('custom.good').replace("event, ctx", "event: { exec: { path: string } }, ctx: { emit(): void }"));
  writeFileSync(join(dir, 'throws.mjs'), sig('custom.throws', "throw new Error('boom');"));
  writeFileSync(join(dir, 'syntax.js'), 'export default { id: ');
  writeFileSync(join(dir, 'dup.mjs'), sig('drift.new_executable'));
  writeFileSync(join(dir, 'severity.mjs'), sig('custom.sev').replace("'LOW'", "'URGENT'"));
  writeFileSync(join(dir, 'noonevent.mjs'), `export default { id: 'custom.none', name: 'n', severity: 'LOW', events: ['exec'] };`);
  writeFileSync(join(dir, 'notes.txt'), 'ignored');
  writeFileSync(join(dir, 'good.test.ts'), 'throw new Error("tests are not signatures")');
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('custom signatures: good modules load, bad ones are named with the reason', async () => {
  const taken = new Set(builtinSignatures.map((s) => s.id));
  const { signatures, errors } = await loadCustomSignatures(dir, taken);
  assert.deepEqual(signatures.map((s) => s.id).sort(), ['custom.good', 'custom.throws']);
  const byFile = Object.fromEntries(errors.map((e) => [e.file.split('/').pop(), e.reason]));
  assert.deepEqual(Object.keys(byFile).sort(), ['dup.mjs', 'noonevent.mjs', 'severity.mjs', 'syntax.js']);
  assert.match(byFile['dup.mjs']!, /duplicate signature id drift\.new_executable/);
  assert.match(byFile['severity.mjs']!, /invalid severity "URGENT"/);
  assert.match(byFile['noonevent.mjs']!, /onEvent is missing/);
  assert.match(byFile['syntax.js']!, /Unexpected|SyntaxError|end of input/i);
});

test('custom signatures: files and directories, several at once; each module once; a wrong path is named', async () => {
  const taken = new Set(builtinSignatures.map((s) => s.id));
  // A file alone: the bug was ENOTDIR.
  const one = await loadCustomSignatures(join(dir, 'good.ts'), new Set(taken));
  assert.deepEqual(one.signatures.map((s) => s.id), ['custom.good']);
  assert.deepEqual(one.errors, []);
  // A directory and a file inside it: the file is not loaded twice (no duplicate-id error).
  const other = mkdtempSync(join(tmpdir(), 'dw-custom-other-'));
  try {
    writeFileSync(join(other, 'second.mjs'), sig('custom.second'));
    writeFileSync(join(other, 'README.md'), 'not a module');
    const both = await loadCustomSignatures([join(other, 'second.mjs'), join(dir, 'good.ts'), other, join(other, 'README.md'), join(dir, 'absent.ts')], new Set(taken));
    assert.deepEqual(both.signatures.map((s) => s.id), ['custom.second', 'custom.good']);
    const byFile = Object.fromEntries(both.errors.map((e) => [e.file.split('/').pop(), e.reason]));
    assert.deepEqual(Object.keys(byFile).sort(), ['README.md', 'absent.ts']);
    assert.match(byFile['README.md']!, /not a signature module \(expected \.ts, \.mts, \.js, \.mjs\)/);
    assert.match(byFile['absent.ts']!, /cannot read: ENOENT/);
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
});

test('custom signatures: a loaded TypeScript signature runs, a throwing one is isolated', async () => {
  const { signatures } = await loadCustomSignatures(dir, new Set(builtinSignatures.map((x) => x.id)));
  const { findings, errors } = runSignatures(signatures, [
    { record: { path: '/tmp/x', fileFlags: FileFlag.OVERLAY, cgroup: 'libpod-' + 'b'.repeat(64) } },
  ]);
  assert.deepEqual(findings.map((f) => f.signature?.id), ['custom.good']);
  assert.equal(errors, 1);
});

test('replay: a recording runs offline through the pipeline with custom signatures and a policy', () => {
  const rec = join(dir, 'rec.dwrec');
  const batch = join(root, 'test', 'fixtures', 'records', 'minicontainer-drift.bin');
  const data = Buffer.concat([
    Buffer.from(JSON.stringify({ format: 'driftwatch-recording', version: 1, hostname: 'h', host: { mnt: 1, pid: 2 }, recordedAt: '' }) + '\n'),
    (() => { const b = Buffer.alloc(4); b.writeUInt32LE(require_size(batch)); return b; })(),
    readBatch(batch),
  ]);
  writeFileSync(rec, data);
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, 'exceptions:\n  - signature: drift.tmpfs_exec\n    executable: /dev/shm/*\n    reason: test\n');
  const sigs = join(dir, 'only-good');
  spawnSync('mkdir', [sigs]);
  copyFileSync(join(dir, 'good.ts'), join(sigs, 'good.ts'));
  const r = spawnSync(process.execPath, [join(root, 'bin', 'driftwatch.js'), 'replay', rec, '--signatures', sigs, '--policy', policy, '--jsonl', '-'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const ids = r.stdout.trim().split('\n').map((l) => JSON.parse(l).signature.id).sort();
  assert.deepEqual(ids, ['custom.good', 'custom.good', 'drift.fileless_exec', 'drift.fileless_exec', 'drift.modified_executable', 'drift.new_executable', 'drift.new_executable']);

  // --signatures repeated: a directory and a single module file beside it.
  const single = join(dir, 'single');
  spawnSync('mkdir', [single]);
  writeFileSync(join(single, 'all-tmp.mjs'), sig('custom.single'));
  const r2 = spawnSync(process.execPath, [join(root, 'bin', 'driftwatch.js'), 'replay', rec, '--signatures', sigs, '--signatures', join(single, 'all-tmp.mjs'), '--policy', policy, '--jsonl', '-'], { encoding: 'utf8' });
  assert.equal(r2.status, 0, r2.stderr);
  const ids2 = r2.stdout.trim().split('\n').map((l) => JSON.parse(l).signature.id);
  assert.equal(ids2.filter((id) => id === 'custom.single').length, 2);
  assert.equal(ids2.filter((id) => id === 'custom.good').length, 2);
  assert.match(r2.stderr, /custom signatures: custom\.good, custom\.single/);
});

import { readFileSync, statSync } from 'node:fs';
function require_size(p: string): number {
  return statSync(p).size;
}
function readBatch(p: string): Buffer {
  return readFileSync(p);
}

test('custom signatures: a stream signature loads from outside the project, with the sensor\'s RxJS, and runs', async () => {
  const other = mkdtempSync(join(tmpdir(), 'dw-custom-stream-'));
  try {
    writeFileSync(
      join(other, 'twice.mjs'),
      `import { bufferCount, map } from 'rxjs';
       import { defineStreamSignature } from 'driftwatch/sdk';
       export default defineStreamSignature({ id: 'custom.twice', name: 't', version: '1', description: '', severity: 'LOW', events: ['exec'],
         detect: (events) => events.pipe(bufferCount(2), map((evs) => ({ event: evs[1], data: { n: String(evs.length) } }))) });`,
    );
    writeFileSync(join(other, 'both.mjs'), `export default { id: 'custom.both', name: 'b', severity: 'LOW', events: ['exec'], onEvent() {}, detect: (e) => e };`);
    const { signatures, errors } = await loadCustomSignatures(other, new Set());
    assert.deepEqual(signatures.map((s) => s.id), ['custom.twice']);
    assert.match(errors[0]!.reason, /onEvent and detect both given/);
    const record = { path: '/tmp/x', cgroup: 'libpod-' + 'c'.repeat(64) };
    const { findings } = runSignatures(signatures, [{ record }, { record, at: 5 }, { record, at: 9 }]);
    assert.deepEqual(findings.map((f) => f.signature?.data?.['n']), ['2']);
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
});

// Isolation: the sensor runs custom signatures in worker threads. A module
// that loops, hogs memory, crashes or throws costs only itself.
import { containerOf } from '../../src/pipeline/container.js';
import { decodeExecRecord } from '../../src/pipeline/decode.js';
import { SignatureEngine } from '../../src/pipeline/engine.js';
import { BootClock, type Finding } from '../../src/pipeline/finding.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { encodeExec } from '../../src/sdk/encode.js';
import { DEFAULT_LIMITS, loadIsolatedSignatures, type IsolationLimits } from '../../src/signatures/isolated.js';

const LIMITS: IsolationLimits = { ...DEFAULT_LIMITS, eventBudgetMs: 2_000, loadBudgetMs: 5_000, memoryMb: 32 };
const HOST = { mnt: 1, pid: 2 };
const dropped = (path: string) => {
  const exec = decodeExecRecord(encodeExec({ path, fileFlags: FileFlag.OVERLAY | FileFlag.OVL_UPPER_DENTRY | FileFlag.OVL_UPPER_ALIAS, cgroup: 'libpod-' + 'e'.repeat(64), args: [path, 'x'] }));
  return { kind: 'exec' as const, exec, container: containerOf(exec, HOST) };
};

const BAD = {
  'loop.mjs': sig('custom.loop', "if (event.exec.path === '/tmp/trigger') while (true) {}"),
  'hog.mjs': sig('custom.hog', "if (event.exec.path === '/tmp/trigger') { const keep = []; for (;;) keep.push(new Array(1e5).fill(keep.length)); }"),
  'crash.mjs': sig('custom.crash', "if (event.exec.path === '/tmp/trigger') setTimeout(() => { throw new Error('async boom'); });"),
  'exits.mjs': sig('custom.exits', "if (event.exec.path === '/tmp/trigger') process.exit(3);"),
  'throws.mjs': sig('custom.throws', "throw new Error('boom');"),
};

async function withModules<T>(files: Record<string, string>, body: (dir: string) => Promise<T>): Promise<T> {
  const d = mkdtempSync(join(tmpdir(), 'dw-isolated-'));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
    return await body(d);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

/** Runs the engine until pred holds on its metrics (or fails after ms). */
async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('isolated: modules load in a worker; one that loops or hogs memory while loading is named and left out', async () => {
  await withModules(
    {
      'good.mjs': sig('custom.good'),
      'loops-at-load.mjs': 'while (true) {}\nexport default {};',
      'syntax.js': 'export default { id: ',
      'dup.mjs': sig('drift.new_executable'),
    },
    async (d) => {
      const { signatures, errors } = await loadIsolatedSignatures(d, new Set(builtinSignatures.map((s) => s.id)), { ...LIMITS, loadBudgetMs: 2_000 });
      assert.deepEqual(signatures.map((s) => [s.id, s.stream, s.module.index]), [['custom.good', false, 0]]);
      const byFile = Object.fromEntries(errors.map((e) => [e.file.split('/').pop(), e.reason]));
      assert.deepEqual(Object.keys(byFile).sort(), ['dup.mjs', 'loops-at-load.mjs', 'syntax.js']);
      assert.match(byFile['loops-at-load.mjs']!, /did not load within 2000 ms/);
      assert.match(byFile['dup.mjs']!, /duplicate signature id drift\.new_executable/);
    },
  );
  // Its own load, with a budget that a busy machine cannot reach first: the heap limit ends it.
  await withModules({ 'hogs-at-load.mjs': 'const keep = []; for (;;) keep.push(new Array(1e5).fill(keep.length));\nexport default {};' }, async (d) => {
    const { signatures, errors } = await loadIsolatedSignatures(d, new Set(), { ...LIMITS, loadBudgetMs: 60_000 });
    assert.deepEqual(signatures, []);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.reason, /ran out of memory while loading \(32 MB\)/);
  });
});

test('isolated: a looping, a memory-hungry, a crashing and an exiting signature are stopped, disabled, logged by name and counted; built-ins and a good custom one go on', async () => {
  await withModules({ ...BAD, 'good.ts': sig('custom.good').replace('event, ctx', 'event: { exec: { path: string } }, ctx: { emit(): void }') }, async (d) => {
    const { signatures, errors } = await loadIsolatedSignatures(d, new Set(builtinSignatures.map((s) => s.id)), LIMITS);
    assert.deepEqual(errors, []);
    assert.equal(signatures.length, 6);
    const metrics = new Metrics();
    const logs: string[] = [];
    const engine = new SignatureEngine([...builtinSignatures, ...signatures], { hostname: 'h', clock: new BootClock(), metrics, limits: LIMITS, log: (m) => logs.push(m) });
    const later: Finding[] = [];
    let completed = false;
    engine.streamFindings.subscribe({ next: (f) => later.push(f), complete: () => (completed = true) });
    try {
      // Every bad one is triggered; the main thread keeps answering while they spin.
      const first = engine.dispatchBatch([dropped('/tmp/trigger')]);
      assert.ok(first.some((f) => f.signature?.id === 'drift.new_executable'), 'the built-in finding is made at once, on this thread');
      let maxLagMs = 0;
      for (let i = 0; i < 40; i++) {
        const t = performance.now();
        await new Promise((r) => setTimeout(r, 25));
        maxLagMs = Math.max(maxLagMs, performance.now() - t - 25);
        const found = engine.dispatchBatch([dropped(`/tmp/next-${i}`)]);
        assert.ok(found.some((f) => f.signature?.id === 'drift.new_executable' && f.process?.executable?.path === `/tmp/next-${i}`));
      }
      // Generous: the point is that no signature holds this thread for its budget or more.
      assert.ok(maxLagMs < LIMITS.eventBudgetMs, `event loop lag ${maxLagMs} ms`);
      const stopped = (id: string, reason: string) => metrics.get('signature_stopped_total', { signature: id, reason });
      await until(() => stopped('custom.loop', 'time_budget') + stopped('custom.hog', 'memory') + stopped('custom.crash', 'crashed') + stopped('custom.exits', 'crashed') === 4, 20_000, `all four stopped; logs: ${logs.join('\n')}`);
      for (const id of ['custom.loop', 'custom.hog', 'custom.crash', 'custom.exits']) {
        assert.equal(metrics.get('signatures_disabled_total', { signature: id }), 1, id);
        assert.equal(logs.filter((l) => l.includes(`custom signature ${id} (n) stopped and disabled`)).length, 1, `${id}: ${logs.join('\n')}`);
      }
      assert.match(logs.find((l) => l.includes('custom.loop'))!, /spent over 2000 ms on one event/);
      assert.match(logs.find((l) => l.includes('custom.hog'))!, /exceeded its memory limit \(32 MB heap\)/);
      assert.match(logs.find((l) => l.includes('custom.crash'))!, /crashed: async boom/);
      assert.match(logs.find((l) => l.includes('custom.exits'))!, /exited \(code 3\)/);
      // The good custom signature made its findings in its worker: they arrive later, not from dispatchBatch.
      await until(() => later.filter((f) => f.signature?.id === 'custom.good').length === 41, 10_000, 'custom.good findings');
      const one = later.find((f) => f.signature?.id === 'custom.good')!;
      assert.equal(one.process?.executable?.path, '/tmp/trigger');
      assert.equal(one.container?.id, 'e'.repeat(64));
      assert.equal(metrics.get('findings_total', { signature: 'custom.good' }), 41);
      // The throwing one is counted from its worker and disabled after 100 consecutive errors, as on the main path.
      for (let i = 0; i < 60; i++) engine.dispatchBatch([dropped(`/tmp/more-${i}`)]);
      await until(() => metrics.get('signatures_disabled_total', { signature: 'custom.throws' }) === 1, 10_000, 'custom.throws disabled');
      assert.equal(metrics.get('signature_errors_total', { signature: 'custom.throws' }), 100);
      assert.ok(logs.some((l) => /signature custom\.throws disabled after 100 consecutive errors; last: boom/.test(l)));
    } finally {
      engine.close();
    }
    await until(() => completed, 10_000, 'findings to complete');
  });
});

test('isolated: a stream signature runs in its worker; its windows flush when the input ends', async () => {
  await withModules(
    {
      'pairs.mjs': `import { bufferCount, map, toArray } from 'rxjs';
        import { defineStreamSignature } from 'driftwatch/sdk';
        export default [
          defineStreamSignature({ id: 'custom.pairs', name: 'p', version: '1', description: '', severity: 'LOW', events: ['exec'],
            detect: (events) => events.pipe(bufferCount(2), map((evs) => ({ event: evs[evs.length - 1], data: { n: String(evs.length) } }))) }),
          defineStreamSignature({ id: 'custom.at_end', name: 'e', version: '1', description: '', severity: 'INFO', events: ['exec'],
            detect: (events, ctx) => events.pipe(toArray(), map((evs) => ({ event: evs[0], data: { seen: String(evs.length), config: String(ctx.config.k) } }))) }),
        ];`,
    },
    async (d) => {
      const { signatures } = await loadIsolatedSignatures(d, new Set(), LIMITS);
      assert.deepEqual(signatures.map((s) => [s.id, s.stream]), [['custom.pairs', true], ['custom.at_end', true]]);
      const metrics = new Metrics();
      const engine = new SignatureEngine(signatures, { hostname: 'h', clock: new BootClock(), metrics, limits: LIMITS, config: (id) => ({ k: id }) });
      const later: Finding[] = [];
      const done = new Promise<void>((res) => engine.streamFindings.subscribe({ next: (f) => later.push(f), complete: res }));
      engine.dispatchBatch([dropped('/tmp/a'), dropped('/tmp/b'), dropped('/tmp/c')]);
      engine.endStreams();
      await done;
      const pairs = later.filter((f) => f.signature?.id === 'custom.pairs').map((f) => [f.process?.executable?.path, f.signature?.data?.['n']]);
      assert.deepEqual(pairs, [['/tmp/b', '2'], ['/tmp/c', '1']]);
      const atEnd = later.filter((f) => f.signature?.id === 'custom.at_end');
      assert.deepEqual(atEnd.map((f) => f.signature?.data), [{ seen: '3', config: 'custom.at_end' }]);
      engine.close();
    },
  );
});

test('replay: a looping custom signature is stopped within --signature-budget-ms; the built-in findings all come out', () => {
  const rec = join(dir, 'rec.dwrec'); // written by the replay test above
  const loopDir = join(dir, 'looping');
  spawnSync('mkdir', [loopDir]);
  writeFileSync(join(loopDir, 'loop.mjs'), sig('custom.spin', 'while (true) {}'));
  const started = Date.now();
  const r = spawnSync(process.execPath, [join(root, 'bin', 'driftwatch.js'), 'replay', rec, '--signatures', loopDir, '--signature-budget-ms', '200', '--jsonl', '-'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(Date.now() - started < 30_000);
  const ids = r.stdout.trim().split('\n').map((l) => JSON.parse(l).signature.id).sort();
  assert.deepEqual(ids, ['drift.fileless_exec', 'drift.fileless_exec', 'drift.modified_executable', 'drift.new_executable', 'drift.new_executable', 'drift.tmpfs_exec']);
  assert.match(r.stderr, /custom signature custom\.spin \(n\) stopped and disabled until the next reload: spent over 200 ms on one event/);
  const bad = spawnSync(process.execPath, [join(root, 'bin', 'driftwatch.js'), 'replay', rec, '--signature-memory-mb', 'lots'], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /signatureMemoryMb: expected a whole number/);
});

test('isolated: the shipped examples (one of each kind) load in workers, and the per-event one finds from its worker', async () => {
  const { signatures, errors } = await loadIsolatedSignatures(join(root, 'examples', 'signatures'), new Set(builtinSignatures.map((s) => s.id)), LIMITS);
  assert.deepEqual(errors, []);
  assert.deepEqual(signatures.map((s) => [s.id, s.stream]), [['example.network_tool_in_exec_session', false], ['example.repeated_exec_sessions', true]]);
  const engine = new SignatureEngine(signatures, { hostname: 'h', clock: new BootClock(), metrics: new Metrics(), limits: LIMITS });
  const later: Finding[] = [];
  const done = new Promise<void>((res) => engine.streamFindings.subscribe({ next: (f) => later.push(f), complete: res }));
  const exec = decodeExecRecord(encodeExec({ path: '/usr/bin/curl', session: 2, cgroup: 'libpod-' + 'a'.repeat(64), cgroupParent: 'libpod_parent' }));
  assert.deepEqual(engine.dispatchBatch([{ kind: 'exec', exec, container: containerOf(exec, HOST) }]), []);
  engine.endStreams();
  await done;
  assert.deepEqual(later.map((f) => [f.signature?.id, f.signature?.data?.['tool']]), [['example.network_tool_in_exec_session', 'curl']]);
  engine.close();
});

test('isolated: the worker sees the enrichment signatures see: container, file and script facts, parent executable', async () => {
  await withModules(
    {
      'facts.mjs': `import { defineSignature } from 'driftwatch/sdk';
        export default [
          defineSignature({ id: 'custom.facts', name: 'f', version: '1', description: '', severity: 'LOW', events: ['exec'],
            onEvent(e, ctx) { ctx.emit({ data: { name: String(e.container.name), sha: String(e.file?.sha256), script: String(e.script?.path), parent: String(e.parentExecutable), layer: e.exec.layer } }); } }),
          defineSignature({ id: 'custom.maps', name: 'm', version: '1', description: '', severity: 'LOW', events: ['mmap_exec'], onEvent(e, ctx) { ctx.emit(); } }),
        ];`,
    },
    async (d) => {
      const { signatures } = await loadIsolatedSignatures(d, new Set(), LIMITS);
      const engine = new SignatureEngine(signatures, { hostname: 'h', clock: new BootClock(), metrics: new Metrics(), limits: LIMITS });
      const later: Finding[] = [];
      const done = new Promise<void>((res) => engine.streamFindings.subscribe({ next: (f) => later.push(f), complete: res }));
      const a = dropped('/tmp/a');
      const b = { ...dropped('/tmp/b'), container: { ...a.container, name: 'web-1' }, file: { sha256: 'ab'.repeat(32) }, parentExecutable: '/bin/sh' };
      const c = { ...dropped('/tmp/c'), container: b.container, script: { path: '/tmp/run.sh', layer: 'UPPER_NEW' as const, source: 'kernel' as const } };
      engine.dispatchBatch([a, b, c]);
      engine.endStreams();
      await done;
      assert.deepEqual(
        later.map((f) => [f.process?.executable?.path, f.signature?.data]),
        [
          ['/tmp/a', { name: 'undefined', sha: 'undefined', script: 'undefined', parent: 'undefined', layer: 'UPPER_NEW' }],
          ['/tmp/b', { name: 'web-1', sha: 'ab'.repeat(32), script: 'undefined', parent: '/bin/sh', layer: 'UPPER_NEW' }],
          ['/tmp/c', { name: 'web-1', sha: 'undefined', script: '/tmp/run.sh', parent: 'undefined', layer: 'UPPER_NEW' }],
        ],
      );
      // The finding is built from the event as the worker decoded it: hash and parent as enrichment found them.
      assert.equal(later[1]!.process?.executable?.sha256, 'ab'.repeat(32));
      assert.equal(later[1]!.process?.parent?.executable, '/bin/sh');
      engine.close();
    },
  );
});
