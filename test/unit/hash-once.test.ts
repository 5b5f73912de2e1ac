// A binary run 10,000 times is read once. Hashes are cached by the kernel's
// identity of the file (device, inode, ctime), and execs of a new file that
// arrive while its first read is under way wait for that read. Real files,
// a live process executing each, the real pipeline over replayed records.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../src/log.js';
import type { Finding } from '../../src/pipeline/finding.js';
import { FileFlag as F } from '../../src/pipeline/records.js';
import { startSensor } from '../../src/pipeline/sensor.js';
import { replayLoader } from '../../src/recording.js';
import { encodeExec, frame } from '../../src/sdk/encode.js';

const SLEEP = ['/bin/sleep', '/usr/bin/sleep'].find((p) => existsSync(p));
const skip = process.platform !== 'linux' ? 'needs Linux (/proc/<pid>/exe)' : !SLEEP ? 'no sleep binary' : false;
if (skip) console.log(`# hash-once test skipped: ${skip}`);

/** The kernel's dev_t (major << 20 | minor) of a user-space st_dev. */
function kernelDev(dev: bigint): number {
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return (major << 20) | minor;
}

test('10,000 execs of two dropped binaries: each file is read once, every finding has its hash', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-hash-once-'));
  const children: ChildProcess[] = [];
  try {
    const files = [0, 1].map((i) => {
      const p = join(dir, `dropped-${i}`);
      copyFileSync(SLEEP!, p);
      appendFileSync(p, randomBytes(8)); // two contents, two hashes
      return p;
    });
    const running = files.map((p) => {
      const child = spawn(p, ['60'], { stdio: 'ignore' });
      children.push(child);
      return { path: p, pid: child.pid!, st: statSync(p, { bigint: true }), sha256: createHash('sha256').update(readFileSync(p)).digest('hex') };
    });
    await new Promise((r) => setTimeout(r, 200)); // exec'd: /proc/<pid>/exe is the file
    const cgroup = `libpod-${randomBytes(32).toString('hex')}`;
    const batches: Buffer[] = [];
    for (let b = 0; b < 10; b++) {
      const records: Buffer[] = [];
      for (let i = 0; i < 1000; i++) {
        const r = running[i % 2]!;
        records.push(
          encodeExec({
            hostPid: r.pid,
            hostPpid: process.pid,
            fileFlags: F.OVERLAY | F.OVL_UPPER_DENTRY | F.OVL_UPPER_ALIAS,
            path: r.path,
            filename: r.path,
            args: [r.path, '60'],
            inode: r.st.ino,
            dev: kernelDev(r.st.dev),
            ctimeSec: r.st.ctimeNs / 1_000_000_000n,
            ctimeNsec: Number(r.st.ctimeNs % 1_000_000_000n),
            cgroup,
            cgroupParent: 'machine.slice',
            cgroupId: 99_999n,
            ktimeNs: BigInt(b * 1000 + i + 1),
          }),
        );
      }
      batches.push(frame(records));
    }
    const findings: Finding[] = [];
    const loader = replayLoader(batches);
    const sensor = await startSensor({
      log: createLogger('error'),
      loader,
      hostNamespaces: { mnt: 1, pid: 2 },
      sinks: [{ write: (f) => void findings.push(f), close() {} }],
      pollIntervalMs: 0,
      hostname: 'test',
    });
    await loader.done;
    await sensor.stop();
    assert.equal(sensor.metrics.get('events_decoded_total'), 10_000);
    assert.equal(sensor.metrics.get('file_hash_reads_total'), 2, 'one read per file, not per exec');
    const drift = findings.filter((f) => f.signature?.id === 'drift.new_executable');
    assert.ok(drift.length >= 2, `findings for both files (got ${drift.length})`);
    for (const f of drift) {
      const r = running.find((x) => x.path === f.process?.executable?.path);
      assert.ok(r, `finding for a file of this test: ${f.process?.executable?.path}`);
      assert.equal(f.process?.executable?.sha256, r.sha256);
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
