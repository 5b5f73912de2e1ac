// Dedup on the real kernel, with the default 60 s window: a binary swapped in
// at the same path is reported with its own hash, and a thousand runs of one
// binary are one finding with count 1,000 in the backend.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MiniContainer, kernelSkipReason } from '../helpers/minicontainer.js';
import { SensorProcess, cliPath, type Finding } from '../helpers/sensor-process.js';

const skip = kernelSkipReason();
if (skip) console.log(`# kernel dedup tests skipped: ${skip}`);

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('dedup with a window (real kernel, overlay mini-container)', { skip: skip ?? false }, () => {
  let ct: MiniContainer;
  let sensor: SensorProcess;
  let busybox: Buffer;

  before(async () => {
    ct = new MiniContainer();
    busybox = readFileSync(join(ct.lower, 'bin', 'busybox'));
    sensor = await SensorProcess.start(['--dedup-window', '60s']);
  });

  after(async () => {
    if (sensor) {
      await sensor.stop('SIGTERM');
      sensor.cleanup();
    }
    ct?.destroy();
  });

  test('another binary at the same path within the window is a finding of its own, with its own hash', async () => {
    const n = randomBytes(4).toString('hex');
    const path = `/tmp/d-${n}/busybox`; // busybox finds its applets by name
    const r = ct.run([
      `mkdir /tmp/d-${n}`,
      `cat /bin/busybox > ${path}; echo harmless >> ${path}; chmod +x ${path}`,
      `${path} sleep 0.3`,
      `rm ${path}; cp /bin/busybox ${path}`,
      `${path} sleep 0.3`,
    ].join('; '));
    assert.equal(r.status, 0, r.stderr);
    await sensor.waitFor(() => sensor.matching((f) => f.process.executable.path === path).length >= 2, 15_000, 'both findings');
    const found = sensor.matching((f) => f.process.executable.path === path);
    assert.equal(found.length, 2, 'neither was folded into the other');
    assert.deepEqual(
      found.map((f) => f.process.executable.sha256),
      [sha256(Buffer.concat([busybox, Buffer.from('harmless\n')])), sha256(busybox)],
    );
    // The filesystem may hand the new file the freed inode number: without the
    // hash, only the ctime tells the two files apart.
    const [a, b] = found.map((f) => f.process.executable) as [Finding['process']['executable'], Finding['process']['executable']];
    assert.ok(a.inode !== b.inode || a.ctime !== b.ctime, 'the kernel identities differ');
  });

  test('1,000 runs of one binary: one finding at once, then one summary; the backend stores one finding with count 1,000', { timeout: 120_000 }, async () => {
    const n = randomBytes(4).toString('hex');
    const path = `/tmp/r-${n}/busybox`;
    const r = ct.run(
      `mkdir /tmp/r-${n}; cp /bin/busybox ${path}; i=0; while [ $i -lt 1000 ]; do ${path} true $((i % 3)); i=$((i + 1)); done; sleep 0.5`,
      { timeoutMs: 100_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const first = await sensor.finding((f) => f.process.executable.path === path, 'the first finding');
    assert.equal(first.count, 1);
    assert.equal(first.process.executable.sha256, sha256(busybox));
    // The summary comes when the window ends, or at shutdown: stop now.
    assert.equal(await sensor.stop('SIGTERM'), 0, sensor.stderr.slice(-2000));
    const mine = sensor.matching((f) => f.process.executable.path === path);
    assert.equal(mine.length, 2, `one finding and one summary, got counts ${mine.map((f) => f.count).join(',')}`);
    const summary = mine[1]!;
    assert.equal(summary.count, 1000);
    assert.equal(summary.foldOf, first.id);
    assert.deepEqual(
      summary.distinctArgs.map((a) => [a.args.join(' '), a.count]).sort(), // in the order enrichment finished them
      [[`${path} true 0`, 334], [`${path} true 1`, 333], [`${path} true 2`, 333]],
    );
    const q = spawnSync(process.execPath, [cliPath, 'findings', '--db', join(sensor.dataDir, 'findings.db'), '--json', '--limit', '10000'], { encoding: 'utf8' });
    assert.equal(q.status, 0, q.stderr);
    const stored = q.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Finding).filter((f) => f.process.executable.path === path);
    assert.equal(stored.length, 1, 'the summary updated the first finding');
    assert.equal(stored[0]!.id, first.id);
    assert.equal(stored[0]!.count, 1000);
    assert.equal(stored[0]!.lastSeen, summary.lastSeen);
  });
});
