import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { DecodeError, decodeBatch, decodeExecRecord, decodeRecord } from '../../src/pipeline/decode.js';
import { FileFlag, TruncFlag } from '../../src/pipeline/records.js';
import { encodeExec, frame } from '../../src/sdk/encode.js';

const fixtures = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..'), 'test', 'fixtures', 'records');
const load = (name: string) => decodeBatch(readFileSync(join(fixtures, name)));

test('decoder: every field of an encoded record round-trips', () => {
  const rec = encodeExec({
    hostPid: 5000, hostPpid: 4999, pid: 12, ppid: 11, uid: 1000, gid: 1001, mntNs: 11, pidNs: 22,
    cgroupId: 77n, inode: 9876543210n, dev: (8 << 20) | 3, nlink: 2, fileFlags: FileFlag.OVERLAY,
    comm: 'curl', filename: '/usr/bin/curl', path: '/usr/local/bin/curl', args: ['curl', '-s', 'http://x'],
    cgroup: 'libpod-' + 'a'.repeat(64), cgroupParent: 'libpod_parent', session: 2,
    ancestors: [{ hostPid: 4999, comm: 'sh' }, { hostPid: 4000, comm: 'conmon' }],
  });
  const e = decodeExecRecord(rec);
  assert.equal(e.hostPid, 5000);
  assert.equal(e.hostPpid, 4999);
  assert.equal(e.pid, 12);
  assert.equal(e.ppid, 11);
  assert.equal(e.uid, 1000);
  assert.equal(e.gid, 1001);
  assert.equal(e.mntNs, 11);
  assert.equal(e.pidNs, 22);
  assert.equal(e.cgroupId, 77n);
  assert.equal(e.inode, 9876543210n);
  assert.equal(e.device, '8:3');
  assert.equal(e.nlink, 2);
  assert.equal(e.comm, 'curl');
  assert.equal(e.filename, '/usr/bin/curl');
  assert.equal(e.path, '/usr/local/bin/curl');
  assert.deepEqual(e.args, ['curl', '-s', 'http://x']);
  assert.equal(e.cgroup, 'libpod-' + 'a'.repeat(64));
  assert.equal(e.cgroupParent, 'libpod_parent');
  assert.equal(e.session, 'exec');
  assert.deepEqual(e.ancestors, [{ hostPid: 4999, comm: 'sh' }, { hostPid: 4000, comm: 'conmon' }]);
  assert.equal(e.layer, 'LOWER');
});

test('decoder: records are views into the batch until detached; a detached record keeps its bytes', () => {
  const batch = frame([encodeExec({ hostPid: 11 }), encodeExec({ hostPid: 22 })]);
  const { events } = decodeBatch(batch);
  events[1]!.detach();
  batch.fill(0);
  assert.equal(events[0]!.hostPid, 0, 'a view sees the reused buffer');
  assert.equal(events[1]!.hostPid, 22, 'a detached record owns its bytes');
});

test('decoder: truncation flags surface', () => {
  const e = decodeExecRecord(encodeExec({ truncFlags: TruncFlag.PATH | TruncFlag.ARGV }));
  assert.equal(e.pathTruncated, true);
  assert.equal(e.argsTruncated, true);
});

const malformed: Array<[string, Buffer, RegExp]> = [
  ['short record', Buffer.alloc(8), /shorter than its header/],
  ['unknown kind', encodeExec({ kind: 99 }), /unknown record kind 99/],
  ['old version', encodeExec({ version: 1 }), /version 1/],
  ['size larger than the record', (() => { const b = encodeExec(); b.writeUInt32LE(b.length + 100, 4); return b; })(), /claims/],
  ['string lengths overrun', (() => { const b = encodeExec(); b.writeUInt16LE(60000, 112); return b; })(), /overrun/],
];
for (const [name, rec, re] of malformed) {
  test(`decoder: malformed record (${name}) is rejected with a reason`, () => {
    assert.throws(() => decodeRecord(rec), (e: unknown) => e instanceof DecodeError && re.test(e.message));
  });
}

test('decoder: a malformed record in a batch is reported and the rest still decode', () => {
  const batch = frame([encodeExec({ comm: 'a' }), encodeExec({ kind: 7 }), encodeExec({ comm: 'c' })]);
  const { events, errors } = decodeBatch(batch);
  assert.deepEqual(events.map((e) => e.comm), ['a', 'c']);
  assert.equal(errors.length, 1);
});

test('decoder: a truncated frame ends the batch with an error', () => {
  const batch = frame([encodeExec({ comm: 'a' }), encodeExec({ comm: 'b' })]);
  const { events, errors } = decodeBatch(batch, batch.length - 16);
  assert.deepEqual(events.map((e) => e.comm), ['a']);
  assert.equal(errors.length, 1);
});

test('recorded: every fixture batch decodes without errors', () => {
  const files = readdirSync(fixtures).filter((f) => f.endsWith('.bin'));
  assert.ok(files.length >= 3, 'fixtures present');
  for (const f of files) {
    const { events, errors } = load(f);
    assert.deepEqual(errors, [], f);
    assert.ok(events.length > 0, f);
  }
});

test('recorded: minicontainer drift records decode to the scenario that produced them', () => {
  const { events } = load('minicontainer-drift.bin');
  const byArg = (a: string) => events.find((e) => e.args.includes(a))!;
  assert.equal(byArg('new').layer, 'UPPER_NEW');
  assert.equal(byArg('new').path, '/tmp/busybox-new');
  assert.equal(byArg('modified').layer, 'UPPER_COPIED_UP');
  assert.equal(byArg('modified').path, '/bin/busybox-img');
  assert.equal(byArg('memfd').layer, 'MEMFD');
  assert.equal(byArg('memfd').path, 'memfd:payload');
  assert.equal(byArg('shm').layer, 'TMPFS');
  assert.equal(byArg('shm').path, '/dev/shm/busybox-shm');
  assert.equal(byArg('unlinked').layer, 'UPPER_NEW');
  assert.equal(byArg('unlinked').nlink, 0);
  for (const e of events) {
    assert.notEqual(e.pidNs, 0);
    assert.equal(e.session, 'init');
    // recorded on 6.18: overlay files carry the >= 6.5 layout bit, never the old one
    if (e.fileFlags & FileFlag.OVERLAY) assert.ok(e.fileFlags & FileFlag.OVL_LAYOUT_FSDATA);
    assert.equal(e.fileFlags & FileFlag.OVL_LAYOUT_ENTRY, 0);
  }
});

test('recorded: podman records carry the container cgroup and the exec session', () => {
  const { events } = load('podman-run-and-exec.bin');
  const init = events.find((e) => e.path === '/tmp/busybox-y')!;
  const exec = events.find((e) => e.args.includes('exec-session'))!;
  assert.match(init.cgroup, /^libpod-[0-9a-f]{64}$/);
  assert.equal(init.cgroupParent, 'libpod_parent');
  assert.equal(init.session, 'init');
  assert.equal(init.pid, 1);
  assert.equal(exec.session, 'exec');
  assert.equal(exec.cgroup, init.cgroup);
  assert.equal(exec.ancestors[0]?.comm, 'conmon');
});

test('recorded: emit-all records include image files and host files', () => {
  const { events } = load('emit-all-image-and-host.bin');
  const image = events.find((e) => e.path === '/bin/busybox-img')!;
  assert.equal(image.layer, 'LOWER');
  assert.ok(image.fileFlags & FileFlag.EMITTED_ALL);
  assert.ok(events.some((e) => e.layer === 'OTHER'));
  // recorded on a hybrid host: tasks at the v2 root are named by their v1 memory cgroup
  const host = events.find((e) => e.layer === 'OTHER')!;
  assert.match(host.cgroup, /^[0-9a-f]{32}$/);
  assert.equal(host.cgroupParent, 'process_api');
});
