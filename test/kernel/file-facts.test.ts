// A container swaps the path of a binary it just ran, and the sensor must not
// report the new file's hash as the binary's. The real CLI runs; it is held
// (SIGSTOP) while the container execs, exits and swaps, so that it reads the
// file after the swap, with the container still alive: the race the attacker
// wins in practice, made certain. Whatever is at the path then, the finding
// carries the executed file's hash or none, and says why.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OverlayFacts, rootOverlayFromMountinfo } from '../../src/enrich/overlay-facts.js';
import type { KernelFileId } from '../../src/enrich/safe-open.js';
import { MiniContainer, kernelSkipReason, mountHostOverlay } from '../helpers/minicontainer.js';
import { SensorProcess, argsContain, type Finding } from '../helpers/sensor-process.js';

const skip = kernelSkipReason();
if (skip) console.log(`# file facts kernel tests skipped: ${skip}`);

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const READ_BOUND = 1024 ** 3;
const ioRead = (pid: number) => Number(/^rchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? NaN);

describe('file facts come only from the executed file (real kernel, swaps after exec)', { skip: skip ?? false }, () => {
  let ct: MiniContainer;
  let sensor: SensorProcess;
  let hostDir: string;
  let hostSecret: string;
  let busyboxSha: string;
  const nonce = () => randomBytes(4).toString('hex');

  before(async () => {
    ct = new MiniContainer();
    hostDir = mkdtempSync(join(tmpdir(), 'driftwatch-hostfile-'));
    // A host file the container would like its binary to be mistaken for.
    hostSecret = join(hostDir, 'secret');
    writeFileSync(hostSecret, `host only ${nonce()}\n`);
    const busybox = readFileSync(join(ct.lower, 'bin', 'busybox'));
    busyboxSha = sha(busybox);
    // An image whose lower layer holds an absolute symlink to a host file with
    // the same content as an image binary (/bin/orig): comparing by following
    // it would call a renamed copy "the image's content".
    copyFileSync(join(ct.lower, 'bin', 'busybox'), join(hostDir, 'host-busybox'));
    symlinkSync(join(hostDir, 'host-busybox'), join(ct.lower, 'bin', 'tool'));
    cpSync(join(ct.lower, 'bin', 'busybox'), join(ct.lower, 'bin', 'orig'));
    mkdirSync(join(ct.lower, 'srv'), { recursive: true });
    // A dynamic binary that stays alive, to map a library into (same libc as the image's true-dyn).
    copyFileSync('/bin/sleep', join(ct.lower, 'bin', 'sleep-dyn'));
    sensor = await SensorProcess.start(['--mmap-tracepoint']); // exec mappings, where LSM and fentry are refused
  });

  after(async () => {
    await sensor?.stop('SIGTERM');
    ct?.destroy();
    sensor?.cleanup();
    rmSync(hostDir, { recursive: true, force: true });
  });

  /**
   * Runs `exec` (which prints nothing) then `swap` in the container while the
   * sensor is stopped; resumes it once the swap is done, with the container
   * still alive; returns the finding of the exec tagged with n.
   */
  async function swapped(n: string, exec: string, swap: string, which: (f: Finding) => boolean = argsContain(n)): Promise<Finding> {
    process.kill(sensor.pid, 'SIGSTOP');
    let run: ReturnType<MiniContainer['start']> | undefined;
    try {
      run = ct.start(`${exec}; ${swap}; echo swapped; sleep 3`);
      const deadline = Date.now() + 15_000;
      while (!run.output().includes('swapped') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.ok(run.output().includes('swapped'), 'the container ran and swapped');
    } finally {
      process.kill(sensor.pid, 'SIGCONT');
    }
    const f = await sensor.finding(which, `finding ${n}`);
    const r = await run.done;
    assert.equal(r.status, 0, r.stderr);
    return f;
  }

  const exe = (f: Finding) => f.process.executable as Finding['process']['executable'] & { sha256Unavailable?: string; sameAsImageUnavailable?: string };

  test('baseline: the path still holds the executed file after the process is gone: hashed through the container root', async () => {
    const n = nonce();
    const f = await swapped(n, `cp /bin/busybox /tmp/p-${n}; /tmp/p-${n} true ${n}`, 'true');
    assert.equal(exe(f).sha256, busyboxSha);
    assert.equal(exe(f).sha256Unavailable, undefined);
  });

  const cases: Array<{ name: string; swap: (p: string, n: string) => string; reason: string }> = [
    { name: 'an absolute symlink to a host file', swap: (p) => `rm ${p}; ln -s ${hostSecret} ${p}`, reason: 'not_regular' },
    // Resolved from the upper dir on the host, this climbs out of it to the host's root.
    { name: 'a relative symlink escaping with ../..', swap: (p) => `rm ${p}; ln -s ${'../'.repeat(16)}${hostSecret.slice(1)} ${p}`, reason: 'not_regular' },
    { name: 'a FIFO', swap: (p) => `rm ${p}; busybox mkfifo ${p}`, reason: 'not_regular' },
    { name: 'a symlink to /dev/zero', swap: (p) => `rm ${p}; ln -s /dev/zero ${p}`, reason: 'not_regular' },
    { name: 'a character device (/dev/zero\'s numbers)', swap: (p) => `rm ${p}; busybox mknod ${p} c 1 5`, reason: 'not_regular' },
    { name: 'a 4 GiB sparse file', swap: (p) => `rm ${p}; busybox truncate -s 4G ${p}`, reason: 'replaced' },
    { name: 'a hard link to another file', swap: (p, n) => `echo benign > /tmp/b-${n}; rm ${p}; ln /tmp/b-${n} ${p}`, reason: 'replaced' },
    // The pause lets the coarse clock tick, so the rewrite's ctime differs from the copy's.
    { name: 'the same file rewritten in place (new ctime)', swap: (p) => `sleep 0.05; echo benign > ${p}`, reason: 'replaced' },
  ];

  for (const c of cases) {
    test(`swapped for ${c.name}: no hash but the executed file's, and the reason`, async () => {
      const n = nonce();
      const p = `/tmp/p-${n}`;
      const before = ioRead(sensor.pid);
      const f = await swapped(n, `cp /bin/busybox ${p}; ${p} true ${n}`, c.swap(p, n));
      assert.equal(f.signature.id, 'drift.new_executable');
      assert.notEqual(exe(f).sha256, sha(readFileSync(hostSecret)), 'never the host file');
      assert.equal(exe(f).sha256, undefined, `no hash; got ${exe(f).sha256}`);
      assert.equal(exe(f).sha256Unavailable, c.reason);
      // The swapped file was not read: a 4 GiB file or /dev/zero would show here. (The bound is
      // loose because the sensor also hashes drift in other containers running on this node.)
      assert.ok(ioRead(sensor.pid) - before < READ_BOUND, `sensor read ${ioRead(sensor.pid) - before} bytes`);
    });
  }

  test('an executed file over the size cap is not read: too_large', async () => {
    const n = nonce();
    const p = `/srv/big-${n}`;
    const before = ioRead(sensor.pid);
    // A valid ELF with a 4 GiB sparse tail runs like the original.
    const f = await swapped(n, `cp /bin/busybox ${p}; busybox truncate -s 4G ${p}; ${p} true ${n}`, 'true');
    assert.equal(exe(f).sha256, undefined);
    assert.equal(exe(f).sha256Unavailable, 'too_large');
    assert.ok(ioRead(sensor.pid) - before < READ_BOUND, `sensor read ${ioRead(sensor.pid) - before} bytes`);
  });

  test('an image whose lower layer holds an absolute symlink gives no host-derived sameAsImage', async () => {
    const n = nonce();
    // Renaming an image file over the symlink copies it up: the kernel sees an
    // image file changed in the container at /bin/tool, whose lower entry is the symlink.
    const f = await swapped(n, `mv /bin/orig /bin/tool; /bin/tool true ${n}`, 'true');
    assert.equal(f.process.executable.layer, 'UPPER_COPIED_UP');
    assert.equal(exe(f).sha256, busyboxSha, 'the executed file is hashed');
    assert.notEqual(exe(f).sameAsImage, true, 'not "same as image" by way of the host file');
    assert.equal(exe(f).sameAsImageUnavailable, 'not_regular');
  });

  // An mmap record names no ancestors: the mapping process is the way in, so it stays alive here
  // (busybox sh gives a background job /dev/null, which the image lacks).
  test('a mapped library (mmap records carry ctime too): hashed while unchanged, refused once rewritten', async () => {
    const lib = sha(readFileSync(join(ct.dir, 'vol', 'libdwpreload.so')));
    const mapped = (n: string) => (x: Finding) => x.signature.id === 'drift.exec_mapping' && x.process.executable.path === `/tmp/lib-${n}.so`;
    const n = nonce();
    const f = await swapped(n, `cp /mnt/vol/libdwpreload.so /tmp/lib-${n}.so; busybox mknod /dev/null c 1 3; (LD_PRELOAD=/tmp/lib-${n}.so /bin/sleep-dyn 2 &); sleep 0.3`, 'true', mapped(n));
    assert.notEqual(f.process.executable.ctime, '1970-01-01T00:00:00.000Z', 'the record has the file\'s ctime');
    assert.equal(exe(f).sha256, lib, `unavailable: ${exe(f).sha256Unavailable} ${JSON.stringify(f.process.executable)}`);
    const m = nonce();
    const g = await swapped(m, `cp /mnt/vol/libdwpreload.so /tmp/lib-${m}.so; busybox mknod /dev/null c 1 3; (LD_PRELOAD=/tmp/lib-${m}.so /bin/sleep-dyn 2 &); sleep 0.3`, `echo benign > /tmp/lib-${m}.so`, mapped(m));
    assert.equal(exe(g).sha256, undefined);
    assert.equal(exe(g).sha256Unavailable, 'replaced');
  });

  test('metrics count each reason; the sensor still answers', async () => {
    const text = await (await fetch(`http://127.0.0.1:${sensor.metricsPort}/metrics`)).text();
    const value = (reason: string) => Number(new RegExp(`^driftwatch_file_hash_unavailable_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    assert.ok(value('not_regular') >= 5, text);
    assert.ok(value('replaced') >= 3);
    assert.ok(value('too_large') >= 1);
    assert.equal(value('unavailable'), 0);
    assert.ok(Number(/^driftwatch_same_as_image_unavailable_total\{reason="not_regular"\} (\d+)$/m.exec(text)?.[1]) >= 1);
  });
});

describe('the upper dir stands in for a container that is gone (real overlay mount)', { skip: skip ?? false }, () => {
  let lower: string;
  let ov: ReturnType<typeof mountHostOverlay>;
  const facts = new OverlayFacts();

  before(() => {
    lower = mkdtempSync(join(tmpdir(), 'driftwatch-ct-lower-'));
    writeFileSync(join(lower, 'img'), 'image file\n');
    ov = mountHostOverlay(lower);
  });
  after(() => {
    ov?.cleanup();
    rmSync(lower, { recursive: true, force: true });
  });

  /** The kernel's record of a file on the overlay: the overlay inode's device, number and ctime. */
  function record(path: string): KernelFileId {
    const st = statSync(path, { bigint: true });
    const major = Number((st.dev >> 8n) & 0xfffn);
    const minor = Number(st.dev & 0xffn) | Number((st.dev >> 12n) & ~0xffn);
    return { dev: (major << 20) | minor, inode: st.ino, ctimeSec: st.ctimeNs / 1_000_000_000n, ctimeNsec: Number(st.ctimeNs % 1_000_000_000n) };
  }
  const dirsOf = () => {
    const mi = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === ov.merged)!;
    const d = rootOverlayFromMountinfo(mi.replace(` ${ov.merged} `, ' / '));
    assert.ok(d, 'overlay dirs from mountinfo');
    return d;
  };

  test('a file created in the container: the upper file is the same inode and ctime as the overlay inode', async () => {
    writeFileSync(join(ov.merged, 'new'), 'dropped\n');
    const id = record(join(ov.merged, 'new'));
    const r = await facts.executedHash({ id, path: '/new', rootPids: [], mntNs: 0, upper: true, upperNew: true, dirs: dirsOf() });
    assert.deepEqual(r, { sha256: sha('dropped\n'), source: 'runtime_storage' });
  });

  test('a file created in the container, then swapped in the upper dir: replaced or not_regular', async () => {
    writeFileSync(join(ov.merged, 'swap'), 'dropped\n');
    const id = record(join(ov.merged, 'swap'));
    rmSync(join(ov.merged, 'swap'));
    symlinkSync('/etc/hostname', join(ov.merged, 'swap'));
    assert.deepEqual(await facts.executedHash({ id, path: '/swap', rootPids: [], mntNs: 0, upper: true, upperNew: true, dirs: dirsOf() }), { reason: 'not_regular' });
    writeFileSync(join(ov.merged, 'swap2'), 'dropped\n');
    const id2 = record(join(ov.merged, 'swap2'));
    rmSync(join(ov.merged, 'swap2'));
    writeFileSync(join(ov.merged, 'swap2'), 'benign\n');
    assert.deepEqual(await facts.executedHash({ id: id2, path: '/swap2', rootPids: [], mntNs: 0, upper: true, upperNew: true, dirs: dirsOf() }), { reason: 'replaced' });
  });

  test('#! script layers by name: only regular files inside each layer count', async () => {
    const d = dirsOf();
    writeFileSync(join(lower, 'img.sh'), '#!/bin/sh\n');
    symlinkSync(join(lower, 'img.sh'), join(lower, 'abs.sh')); // an image symlink to a host path (here: the image's own file)
    writeFileSync(join(ov.merged, 'new.sh'), '#!/bin/sh\n');
    symlinkSync(join(lower, 'img.sh'), join(ov.merged, 'planted.sh'));
    assert.equal(await facts.layerOf(d, '/img.sh'), 'LOWER');
    assert.equal(await facts.layerOf(d, '/new.sh'), 'UPPER_NEW');
    assert.equal(await facts.layerOf(d, '/abs.sh'), undefined, 'a lower symlink is no answer, wherever it points');
    assert.equal(await facts.layerOf(d, '/planted.sh'), undefined, 'an upper symlink to a host file is no answer');
    assert.equal(await facts.layerOf(d, `/../../../..${join(lower, 'img.sh')}`), undefined, '.. stays inside each layer');
  });

  test('a copied-up file keeps its lower inode number in the overlay: its upper file matches only through that image copy', async () => {
    writeFileSync(join(ov.merged, 'img'), 'changed\n');
    const id = record(join(ov.merged, 'img'));
    assert.equal(id.inode, statSync(join(lower, 'img'), { bigint: true }).ino, 'overlay inode number is the lower one (this kernel)');
    const d = dirsOf();
    assert.deepEqual(await facts.executedHash({ id, path: '/img', rootPids: [], mntNs: 0, upper: true, upperNew: false, dirs: d }), { sha256: sha('changed\n'), source: 'runtime_storage' });
    // an inode number that is neither the upper file's nor an image copy's at that path: refused
    const stranger = { ...id, inode: id.inode + 12_345n };
    assert.notEqual(stranger.inode, statSync(join(d.upper, 'img'), { bigint: true }).ino);
    assert.deepEqual(await facts.executedHash({ id: stranger, path: '/img', rootPids: [], mntNs: 0, upper: true, upperNew: false, dirs: d }), { reason: 'replaced' });
    // While a process in the container lives, its root view is the overlay: that answers
    // (here the test process, in the mount namespace the overlay is mounted in).
    const ownMntNs = Number(/\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/mnt'))![1]);
    const via = (mntNs: number) => ({ id, path: `${ov.merged}/img`, rootPids: [process.pid], mntNs, upper: false, upperNew: false, dirs: null });
    // A process in another mount namespace is not asked: its root is not the container's.
    assert.deepEqual(await new OverlayFacts().executedHash(via(ownMntNs + 1)), { reason: 'container_gone' });
    assert.deepEqual(await new OverlayFacts().executedHash(via(ownMntNs)), { sha256: sha('changed\n'), source: 'container_process' });
  });
});
