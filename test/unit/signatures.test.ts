// Table-driven signature tests: each row is an event (encoded like the
// kernel does, or taken from a recorded batch) and the findings it must give.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { containerOf } from '../../src/pipeline/container.js';
import { decodeBatch, decodeExecRecord, decodeRecord, type ExecEvent } from '../../src/pipeline/decode.js';
import { SignatureEngine } from '../../src/pipeline/engine.js';
import { BootClock } from '../../src/pipeline/finding.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { EventKind, FileFlag as F, FS_MAGIC, HDR, MMAP, MMAP_VERSION } from '../../src/pipeline/records.js';
import { builtinSignatures } from '../../src/signatures/index.js';
import type { DetectionEvent } from '../../src/sdk/signature.js';
import { encodeExec, type RecordSpec } from '../../src/sdk/encode.js';

const HOST = { mnt: 4026531840, pid: 4026531836 };
const UPPER = F.OVERLAY | F.OVL_UPPER_DENTRY | F.OVL_UPPER_ALIAS | F.OVL_LAYOUT_FSDATA;

function run(exec: ExecEvent): string[] {
  const engine = new SignatureEngine(builtinSignatures, { hostname: 'node-1', clock: new BootClock(), metrics: new Metrics() });
  const ev: DetectionEvent = { kind: 'exec', exec, container: containerOf(exec, HOST) };
  return engine.dispatch(ev).map((f) => f.signature!.id!).sort();
}
const rec = (s: RecordSpec) => decodeExecRecord(encodeExec(s));

const table: Array<[string, RecordSpec, string[]]> = [
  ['image binary', { fileFlags: F.OVERLAY | F.OVL_LAYOUT_FSDATA }, []],
  ['new binary in upper', { fileFlags: UPPER }, ['drift.new_executable']],
  ['copied-up image binary', { fileFlags: UPPER | F.OVL_HAS_LOWER }, ['drift.modified_executable']],
  ['memfd payload', { fileFlags: F.MEMFD | F.UNLINKED, fsMagic: FS_MAGIC.TMPFS, path: 'memfd:x', comm: 'x' }, ['drift.fileless_exec']],
  [
    "runc's memfd self-clone",
    { fileFlags: F.MEMFD | F.UNLINKED, fsMagic: FS_MAGIC.TMPFS, path: 'memfd:runc_cloned:/proc/self/exe', comm: 'runc:[1:CHILD]' },
    [],
  ],
  [
    'a payload that only borrows the runc memfd name',
    { fileFlags: F.MEMFD | F.UNLINKED, fsMagic: FS_MAGIC.TMPFS, path: 'memfd:runc_cloned:/proc/self/exe', comm: 'miner' },
    ['drift.fileless_exec'],
  ],
  ['unlinked file on the host disk of a container', { fileFlags: F.UNLINKED, fsMagic: 0xef53 }, ['drift.fileless_exec']],
  ['unlinked new upper file', { fileFlags: UPPER | F.UNLINKED }, ['drift.fileless_exec', 'drift.new_executable']],
  ['tmpfs binary', { fileFlags: F.TMPFS, fsMagic: FS_MAGIC.TMPFS, path: '/dev/shm/x' }, ['drift.tmpfs_exec']],
  ['volume (other fs) binary', { fileFlags: 0, fsMagic: 0xef53 }, []],
  ['image binary through a nested overlay', { fileFlags: F.OVERLAY | F.OVL_NESTED }, ['drift.nested_overlay_exec']],
  ['dropped binary behind a nested overlay', { fileFlags: UPPER | F.OVL_NESTED }, ['drift.new_executable']],
  ['modified image binary behind a nested overlay', { fileFlags: UPPER | F.OVL_HAS_LOWER | F.OVL_NESTED }, ['drift.modified_executable']],
  ['tmpfs file behind a nested overlay', { fileFlags: F.OVERLAY | F.TMPFS | F.OVL_NESTED }, ['drift.tmpfs_exec']],
  ['nested overlay the kernel could not follow', { fileFlags: F.OVERLAY | F.OVL_NESTED | F.OVL_UNFOLLOWED }, ['drift.nested_overlay_exec']],
  ['overlay types unknown at load: not image, not reported', { fileFlags: F.OVERLAY | F.OVL_UNRESOLVED }, []],
];

for (const [name, spec, expected] of table) {
  test(`signatures: ${name} → ${expected.join(', ') || 'nothing'}`, () => assert.deepEqual(run(rec(spec)), expected));
}

test('signatures: recorded minicontainer batch gives one finding per drift scenario', () => {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const { events } = decodeBatch(readFileSync(join(root, 'test', 'fixtures', 'records', 'minicontainer-drift.bin')));
  const got = Object.fromEntries(events.map((e) => [e.args.at(-1), run(e as ExecEvent)]));
  assert.deepEqual(got, {
    new: ['drift.new_executable'],
    modified: ['drift.modified_executable'],
    memfd: ['drift.fileless_exec'],
    shm: ['drift.tmpfs_exec'],
    unlinked: ['drift.fileless_exec', 'drift.new_executable'],
  });
});

test('finding: the JSON contract has the fields consumers rely on', () => {
  const engine = new SignatureEngine(builtinSignatures, { hostname: 'node-1', clock: new BootClock(), metrics: new Metrics() });
  const exec = rec({ fileFlags: UPPER, path: '/tmp/evil', args: ['/tmp/evil', '-x'], comm: 'evil', cgroup: 'libpod-' + 'b'.repeat(64), pid: 9, ppid: 3, uid: 33, inode: 77n, dev: (0 << 20) | 45 });
  const [f] = engine.dispatch({ kind: 'exec', exec, container: containerOf(exec, HOST) });
  assert.ok(f);
  const j = JSON.parse(JSON.stringify(f));
  assert.match(j.id, /^[0-9a-f-]{36}$/);
  assert.ok(!Number.isNaN(Date.parse(j.time)));
  assert.deepEqual(
    { id: j.signature.id, name: j.signature.name, severity: j.signature.severity },
    { id: 'drift.new_executable', name: 'New executable in container', severity: 'CRITICAL' },
  );
  assert.deepEqual(
    { pid: j.process.pid, ppid: j.process.ppid, uid: j.process.uid, comm: j.process.comm, args: j.process.args },
    { pid: 9, ppid: 3, uid: 33, comm: 'evil', args: ['/tmp/evil', '-x'] },
  );
  assert.deepEqual(
    { path: j.process.executable.path, layer: j.process.executable.layer, inode: j.process.executable.inode, device: j.process.executable.device },
    { path: '/tmp/evil', layer: 'UPPER_NEW', inode: '77', device: '0:45' },
  );
  assert.equal(j.container.id, 'b'.repeat(64));
  assert.equal(j.host.hostname, 'node-1');
  // the same event gives the same id (retries dedupe on it)
  assert.equal(engine.dispatch({ kind: 'exec', exec, container: containerOf(exec, HOST) })[0]!.id, j.id);
});

/** proto3 JSON treats default scalars as absent: drop them for comparison. */
/** proto3 `optional` fields: present even when 0, absent when unknown. */
const WITH_PRESENCE = new Set(['ppid', 'gid', 'hostPpid']);

function withoutDefaults(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutDefaults);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (WITH_PRESENCE.has(k) && x === 0) {
        out[k] = 0;
        continue;
      }
      if (x === false || x === 0 || x === '' || x === null || (Array.isArray(x) && x.length === 0)) continue;
      out[k] = withoutDefaults(x);
    }
    return out;
  }
  return v;
}

test('finding: the JSON is exactly the proto3 JSON mapping of driftwatch.v1.Finding (round trip through the codec)', async () => {
  const { driftwatch } = await import('#gen/finding.js');
  const engine = new SignatureEngine(builtinSignatures, { hostname: 'node-1', clock: new BootClock(), metrics: new Metrics() });
  for (const spec of [
    { fileFlags: UPPER, cgroup: 'libpod-' + 'c'.repeat(64), ancestors: [{ hostPid: 3, comm: 'conmon' }], session: 2 },
    { fileFlags: F.MEMFD | F.UNLINKED, fsMagic: FS_MAGIC.TMPFS, path: 'memfd:x' },
  ] as RecordSpec[]) {
    const exec = rec(spec);
    for (const f of engine.dispatch({ kind: 'exec', exec, container: containerOf(exec, HOST) })) {
      const json = JSON.parse(JSON.stringify(f));
      const M = driftwatch.v1.Finding;
      const back = M.toObject(M.decode(M.encode(M.fromObject(json)).finish()), { longs: String, enums: String });
      assert.deepEqual(back, withoutDefaults(json));
    }
  }
});

test('signatures: drift.nested_overlay_exec says what is behind the overlay and whether it was followed', () => {
  const engine = new SignatureEngine(builtinSignatures, { hostname: 'node-1', clock: new BootClock(), metrics: new Metrics() });
  const data = (fileFlags: number) => {
    const exec = rec({ fileFlags });
    return engine.dispatch({ kind: 'exec', exec, container: containerOf(exec, HOST) }).map((x) => x.signature?.data);
  };
  assert.deepEqual(data(F.OVERLAY | F.OVL_NESTED), [{ backingLayer: 'LOWER', followed: 'true' }]);
  assert.deepEqual(data(F.OVERLAY | F.OVL_NESTED | F.OVL_UNFOLLOWED), [{ backingLayer: 'UNKNOWN', followed: 'false' }]);
});

test('signatures: an mmap_exec finding leaves ppid, gid and the parent out (unknown), not 0', () => {
  const rec = Buffer.alloc(MMAP.data);
  rec.writeUInt16LE(EventKind.MMAP_EXEC, HDR.kind);
  rec.writeUInt16LE(MMAP_VERSION, HDR.version);
  rec.writeUInt32LE(rec.length, HDR.size);
  rec.writeUInt32LE(77, MMAP.hostPid);
  rec.writeUInt32LE(F.OVERLAY | F.OVL_UPPER_DENTRY | F.OVL_UPPER_ALIAS, MMAP.fileFlags);
  const mmap = decodeRecord(rec);
  assert.equal(mmap.kind, 'mmap_exec');
  const engine = new SignatureEngine(builtinSignatures, { hostname: 'node-1', clock: new BootClock(), metrics: new Metrics() });
  const [f] = engine.dispatch({ kind: 'mmap_exec', mmap: mmap as never, container: { inContainer: true, id: null } });
  assert.equal(f?.signature?.id, 'drift.exec_mapping');
  assert.equal(f.process!.hostPid, 77);
  for (const k of ['ppid', 'gid', 'hostPpid', 'parent'] as const) assert.equal(k in f.process!, false, k);
  assert.equal(typeof f.process!.uid, 'number');
});
