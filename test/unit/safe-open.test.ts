// safe-open on real files: every swap a container can make after an exec
// (symlinks out of root, FIFOs, devices, sparse giants, hard links, in-place
// rewrites) yields a reason, never another file's content.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addonPath } from '../../src/native/loader.js';
import { openInRoot, sha256InRoot, sha256OfExe, userDev, type KernelFileId } from '../../src/enrich/safe-open.js';

const skip = existsSync(addonPath) ? false : 'native addon not built';
if (skip) console.log(`# safe-open tests skipped: ${skip}`);

/** What a kernel record would carry for a file: its identity now. */
function recordOf(path: string): KernelFileId {
  const st = statSync(path, { bigint: true });
  const major = Number((st.dev >> 8n) & 0xfffn) | Number((st.dev >> 32n) & ~0xfffn);
  const minor = Number(st.dev & 0xffn) | Number((st.dev >> 12n) & ~0xffn);
  return { dev: (major << 20) | minor, inode: st.ino, ctimeSec: st.ctimeNs / 1_000_000_000n, ctimeNsec: Number(st.ctimeNs % 1_000_000_000n) };
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('safe-open', { skip }, () => {
  let dir: string;
  let root: string;
  let secret: string;
  const payload = Buffer.from('#!/bin/sh\necho payload\n');

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'driftwatch-safeopen-'));
    root = join(dir, 'root');
    mkdirSync(join(root, 'tmp'), { recursive: true });
    mkdirSync(join(root, 'usr', 'bin'), { recursive: true });
    // A "host" file outside root whose hash a container would like reported.
    secret = join(dir, 'host-secret');
    writeFileSync(secret, 'host only\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Writes the payload at p, returns the record the kernel would have made of it. */
  function executed(name: string): { path: string; id: KernelFileId } {
    const p = join(root, 'tmp', name);
    writeFileSync(p, payload, { mode: 0o755 });
    return { path: `/tmp/${name}`, id: recordOf(p) };
  }

  test('kernel dev_t to st_dev', () => {
    assert.equal(userDev((254 << 20) | 0), 0xfe00n);
    assert.equal(userDev(40), 40n);
    assert.equal(userDev((8 << 20) | 300), (300n & 0xffn) | (8n << 8n) | ((300n & ~0xffn) << 12n));
    const st = statSync(secret, { bigint: true });
    assert.equal(userDev(recordOf(secret).dev), st.dev, 'round trip through a real st_dev');
  });

  test('the executed file itself: hashed', async () => {
    const x = executed('same');
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'same', file: x.id } }), { sha256: sha(payload) });
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'upper', file: x.id } }), { sha256: sha(payload) });
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'any' } }), { sha256: sha(payload) });
  });

  test('an absolute symlink to a host file: not followed out of root', async () => {
    const x = executed('abs');
    unlinkSync(join(root, x.path));
    symlinkSync(secret, join(root, x.path));
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'same', file: x.id } }), { reason: 'not_regular' });
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'any' } }), { reason: 'not_regular' });
  });

  test('a ../.. relative symlink escaping root: not followed', async () => {
    const x = executed('rel');
    unlinkSync(join(root, x.path));
    symlinkSync('../../host-secret', join(root, x.path));
    assert.ok(existsSync(join(root, x.path)), 'the plain path does reach the host file');
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'any' } }), { reason: 'not_regular' });
  });

  test('a directory symlinked to the host resolves inside root', async () => {
    // /opt -> / in the container is /, not the host's /: the host secret is not reachable as /opt/host-secret.
    symlinkSync('/', join(root, 'opt'));
    symlinkSync('../..', join(root, 'usr', 'bin', 'up'));
    try {
      const secretName = `/opt${secret}`;
      assert.deepEqual(await sha256InRoot(root, secretName, { expect: { kind: 'any' } }), { reason: 'gone' });
      assert.deepEqual(await sha256InRoot(root, `/usr/bin/up/up/host-secret`, { expect: { kind: 'any' } }), { reason: 'gone' });
      // ... while image files behind such links are found where the container would find them.
      writeFileSync(join(root, 'usr', 'bin', 'tool'), payload);
      assert.deepEqual(await sha256InRoot(root, '/opt/usr/bin/tool', { expect: { kind: 'any' } }), { sha256: sha(payload) });
    } finally {
      unlinkSync(join(root, 'opt'));
      unlinkSync(join(root, 'usr', 'bin', 'up'));
    }
  });

  test('a FIFO: not opened for reading, no hang', async () => {
    const x = executed('fifo');
    unlinkSync(join(root, x.path));
    execFileSync('mkfifo', [join(root, x.path)]);
    const t0 = process.hrtime.bigint();
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'any' } }), { reason: 'not_regular' });
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'same', file: x.id } }), { reason: 'not_regular' });
    assert.ok(process.hrtime.bigint() - t0 < 10_000_000_000n, 'returned (a blocking open would never return)');
  });

  test('a symlink to /dev/zero, and /dev/zero itself through a root', async () => {
    const x = executed('zero');
    unlinkSync(join(root, x.path));
    symlinkSync('/dev/zero', join(root, x.path));
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'any' } }), { reason: 'not_regular' });
    assert.deepEqual(await sha256InRoot('/dev', '/zero', { expect: { kind: 'any' }, crossMounts: true }), { reason: 'not_regular' });
  });

  test('a 4 GiB sparse file: refused by size without reading it', async () => {
    const x = executed('sparse');
    const p = join(root, x.path);
    unlinkSync(p);
    writeFileSync(p, '');
    truncateSync(p, 4 * 1024 ** 3);
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'same', file: x.id } }), { reason: 'replaced' });
    const t0 = process.hrtime.bigint();
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'any' } }), { reason: 'too_large' });
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'same', file: recordOf(p) } }), { reason: 'too_large' }, 'even the executed file itself');
    assert.ok(process.hrtime.bigint() - t0 < 10_000_000_000n);
    unlinkSync(p);
  });

  test('a hard link swap: another inode at the path', async () => {
    const x = executed('hard');
    const benign = join(root, 'usr', 'bin', 'benign');
    writeFileSync(benign, 'benign\n');
    unlinkSync(join(root, x.path));
    linkSync(benign, join(root, x.path));
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'same', file: x.id } }), { reason: 'replaced' });
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'upper', file: x.id } }), { reason: 'replaced' });
  });

  test('a file rewritten in place (same inode, new ctime)', async () => {
    const x = executed('inplace');
    await new Promise((r) => setTimeout(r, 20)); // a coarse clock tick, so the ctime moves
    writeFileSync(join(root, x.path), 'benign\n');
    assert.equal(statSync(join(root, x.path), { bigint: true }).ino, x.id.inode, 'same inode');
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'same', file: x.id } }), { reason: 'replaced' });
    assert.deepEqual(await sha256InRoot(root, x.path, { expect: { kind: 'upper', file: x.id } }), { reason: 'replaced' });
  });

  test('gone: no file, no root', async () => {
    assert.deepEqual(await sha256InRoot(root, '/tmp/never', { expect: { kind: 'any' } }), { reason: 'gone' });
    assert.deepEqual(await sha256InRoot(join(dir, 'no-root'), '/tmp/x', { expect: { kind: 'any' } }), { reason: 'gone' });
    assert.deepEqual(await sha256InRoot(root, '/', { expect: { kind: 'any' } }), { reason: 'not_regular' });
    assert.deepEqual(await sha256InRoot(root, '/tmp', { expect: { kind: 'any' } }), { reason: 'not_regular' });
  });

  test('/proc/<pid>/exe: the executed file while the process lives, checked by identity', async () => {
    const self = recordOf(process.execPath);
    const r = await sha256OfExe('/proc', process.pid, { expect: { kind: 'same', file: self }, maxBytes: 1 << 30 });
    assert.equal(r.sha256, sha(readFileSync(process.execPath)));
    // A record of another file (pid reused, or the process exec'd again): replaced.
    assert.deepEqual(await sha256OfExe('/proc', process.pid, { expect: { kind: 'same', file: recordOf(secret) }, maxBytes: 1 << 30 }), { reason: 'replaced' });
    assert.deepEqual(await sha256OfExe('/proc', 0, { expect: { kind: 'any' } }), { reason: 'gone' });
    const dead = spawnSync('true').pid!;
    assert.deepEqual(await sha256OfExe('/proc', dead, { expect: { kind: 'same', file: self } }), { reason: 'gone' });
  });

  test('a file that changes after the check: not hashed as the checked one', async () => {
    const x = executed('late');
    const opened = await openInRoot(root, x.path, { expect: { kind: 'same', file: x.id } });
    assert.ok(opened.ok);
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(join(root, x.path), 'benign, written after the check\n');
    assert.deepEqual(await opened.file.sha256(), { reason: 'replaced' });
    await opened.file.close();
  });

  test('mounts below root are not crossed unless asked', { skip: process.getuid?.() === 0 ? false : 'needs root to mount' }, async () => {
    const mnt = join(root, 'mnt');
    mkdirSync(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
    try {
      writeFileSync(join(mnt, 'f'), payload);
      assert.deepEqual(await sha256InRoot(root, '/mnt/f', { expect: { kind: 'any' } }), { reason: 'replaced' });
      assert.deepEqual(await sha256InRoot(root, '/mnt/f', { expect: { kind: 'any' }, crossMounts: true }), { sha256: sha(payload) });
      assert.deepEqual(await sha256InRoot(root, '/mnt/f', { expect: { kind: 'upper', file: recordOf(join(mnt, 'f')) }, crossMounts: true }), { reason: 'replaced' });
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
