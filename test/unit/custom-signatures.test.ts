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
