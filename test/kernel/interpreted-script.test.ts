// drift.interpreted_script on the real kernel: an image interpreter (busybox
// sh in a minimal overlay container) runs script files the container wrote,
// and the sensor reports the script's path, layer and hash, read inside the
// container; image scripts, inline code and read-only volumes give nothing.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MiniContainer, containerCgroup, kernelSkipReason, leftoverTestMounts, waitForBpfObjectsGone } from '../helpers/minicontainer.js';
import { unifiedCgroupRoot } from '../../src/prevent/controller.js';
import { SensorProcess, argsContain, type Finding } from '../helpers/sensor-process.js';

const skip = kernelSkipReason();
if (skip) console.log(`# interpreted-script kernel tests skipped: ${skip}`);

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const SIG = 'drift.interpreted_script';
const isScriptFinding = (n: string) => (f: Finding) => argsContain(n)(f) && f.signature.id === SIG;

describe('interpreted scripts (real kernel, overlay mini-container)', { skip: skip ?? false }, () => {
  let ct: MiniContainer;
  let sensor: SensorProcess;
  const nonce = () => randomBytes(4).toString('hex');
  const IMAGE_SCRIPT = 'echo image-script\n';

  before(async () => {
    ct = new MiniContainer();
    // Image scripts: in the lower layer, and on the read-only volume.
    mkdirSync(join(ct.lower, 'app'), { recursive: true });
    writeFileSync(join(ct.lower, 'app', 'entry.sh'), IMAGE_SCRIPT);
    writeFileSync(join(ct.lower, 'app', 'touched.sh'), IMAGE_SCRIPT);
    writeFileSync(join(ct.lower, 'app', 'changed.sh'), IMAGE_SCRIPT);
    writeFileSync(join(ct.dir, 'ro', 'config.sh'), IMAGE_SCRIPT);
    sensor = await SensorProcess.start();
  });

  after(async () => {
    const code = await sensor?.stop('SIGTERM');
    ct?.destroy();
    assert.equal(code, 0, `sensor exits 0 on SIGTERM; stderr:\n${sensor?.stderr.slice(-1000)}`);
    sensor.cleanup();
    assert.deepEqual(await waitForBpfObjectsGone(sensor.bpf), [], 'no program or link left after the sensor stopped');
    assert.deepEqual(leftoverTestMounts(), [], 'no test mounts left');
  });

  function run(script: string): string {
    const r = ct.run(script);
    assert.equal(r.status, 0, `container script failed: ${r.stderr}`);
    return r.stdout;
  }

  /** A dropped binary's finding: once it is in, everything the container ran before was handled. */
  async function barrier(): Promise<void> {
    const n = nonce();
    run(`cp /bin/busybox /tmp/busybox-barrier; /tmp/busybox-barrier true ${n}`);
    await sensor.finding(argsContain(n), 'barrier finding');
    // Script lookups settle on their own, like the barrier's file facts: give them the same time again.
    await new Promise((r) => setTimeout(r, 500));
  }

  test('sh running a script written to /tmp: reported with the script path, layer UPPER_NEW and its hash', async () => {
    const n = nonce();
    const body = `echo ran-${n}\nsleep 2\n`;
    const out = run(`printf '${body.replace(/\n/g, '\\n')}' > /tmp/x-${n}.sh; sh /tmp/x-${n}.sh ${n}`);
    assert.match(out, new RegExp(`ran-${n}`));
    const f = await sensor.finding(isScriptFinding(n), 'interpreted script finding');
    assert.equal(f.signature.severity, 'HIGH');
    assert.equal(f.process.executable.layer, 'LOWER', 'the interpreter itself is the image\'s');
    assert.equal(f.process.script.path, `/tmp/x-${n}.sh`);
    assert.equal(f.process.script.layer, 'UPPER_NEW');
    assert.equal(f.process.script.sha256, sha(body));
    assert.equal(f.signature.data['scriptSha256'], sha(body));
    assert.equal(f.signature.data['interpreterFamily'], 'shell');
    // No other signature took the interpreter for drift.
    assert.deepEqual(sensor.matching(argsContain(n)).map((x) => x.signature.id), [SIG]);
  });

  test('a relative operand resolves against the cwd inside the container', async () => {
    const n = nonce();
    const body = `sleep 2\n`;
    run(`mkdir -p /tmp/w-${n} && cd /tmp/w-${n} && printf '${body.replace(/\n/g, '\\n')}' > r.sh && sh -e r.sh ${n}`);
    const f = await sensor.finding(isScriptFinding(n), 'relative operand finding');
    assert.equal(f.process.script.path, `/tmp/w-${n}/r.sh`);
    assert.equal(f.process.script.layer, 'UPPER_NEW');
    assert.equal(f.process.script.sha256, sha(body));
  });

  test('a script on tmpfs and on a writable volume are drift; one on a read-only volume is not', async () => {
    const n = nonce();
    const body = `sleep 2\n`;
    run(`printf '${body.replace(/\n/g, '\\n')}' > /dev/shm/t-${n}.sh; sh /dev/shm/t-${n}.sh t${n}`);
    const t = await sensor.finding(isScriptFinding(`t${n}`), 'tmpfs script finding');
    assert.equal(t.process.script.layer, 'TMPFS');
    assert.equal(t.process.script.sha256, sha(body));
    run(`printf '${body.replace(/\n/g, '\\n')}' > /mnt/vol/v-${n}.sh; sh /mnt/vol/v-${n}.sh v${n}`);
    const v = await sensor.finding(isScriptFinding(`v${n}`), 'volume script finding');
    assert.equal(v.process.script.layer, 'OTHER');
    assert.equal(v.signature.data['scriptVolume'], 'writable');
    rmSync(join(ct.dir, 'vol', `v-${n}.sh`), { force: true });
    run(`sh /mnt/ro/config.sh ro${n}`);
    await barrier();
    assert.deepEqual(sensor.matching(argsContain(`ro${n}`)), [], 'a read-only volume is not drift');
  });

  test('image scripts, inline code and a bare shell give no finding', async () => {
    const n = nonce();
    run(`sh /app/entry.sh ${n}; cd /app && sh entry.sh ${n}; sh -c 'true ${n}'; echo 'true ${n}' | sh; touch /app/touched.sh; sh /app/touched.sh ${n}`);
    await barrier();
    assert.deepEqual(sensor.matching(argsContain(n)), []);
  });

  test('an image script changed in the container is reported as UPPER_COPIED_UP, not the same as the image', async () => {
    const n = nonce();
    run(`echo 'sleep 2' >> /app/changed.sh; sh /app/changed.sh ${n}`);
    const f = await sensor.finding(isScriptFinding(n), 'changed image script finding');
    assert.equal(f.process.script.layer, 'UPPER_COPIED_UP');
    assert.equal(f.process.script.sha256, sha(`${IMAGE_SCRIPT}sleep 2\n`));
    assert.equal(f.process.script.sameAsImage, false);
  });

  test('a busybox re-exec through /proc/self/exe and `busybox sh` are seen as shells', async () => {
    const n = nonce();
    run(`echo 'sleep 2' > /tmp/b-${n}.sh; busybox sh /tmp/b-${n}.sh ${n}`);
    const f = await sensor.finding(isScriptFinding(n), 'busybox sh finding');
    assert.equal(f.process.script.path, `/tmp/b-${n}.sh`);
    assert.equal(f.process.script.layer, 'UPPER_NEW');
  });

  test('a script swapped for a symlink to a host path after the exec gives no host-derived facts', async () => {
    const n = nonce();
    // A file on the host whose content must never show up, and the same path inside the container.
    const hostFile = `/tmp/driftwatch-host-secret-${n}`;
    writeFileSync(hostFile, `host secret ${n}\n`);
    try {
      // The script replaces itself with a symlink to that path as its first act, then waits for the lookup.
      const body = `rm -f /tmp/s-${n}.sh; ln -s ${hostFile} /tmp/s-${n}.sh; sleep 2\n`;
      run(`echo 'container decoy' > ${hostFile}; printf '${body.replace(/\n/g, '\\n')}' > /tmp/s-${n}.sh; sh /tmp/s-${n}.sh ${n}`);
      const f = await sensor.finding(isScriptFinding(n), 'swapped script finding');
      assert.notEqual(f.process.script.sha256, sha(readFileSync(hostFile)), 'never the host file\'s hash');
      // Followed inside the container's root only: what is there is the container's decoy (or nothing).
      if (f.process.script.sha256) assert.equal(f.process.script.sha256, sha('container decoy\n'));
      assert.ok(['UPPER_NEW', 'UNKNOWN'].includes(f.process.script.layer), f.process.script.layer);
    } finally {
      rmSync(hostFile, { force: true });
    }
  });

  test('kernel counters: inline code and bare shells are dropped in the kernel, watched execs counted', async () => {
    const text = await (await fetch(`http://127.0.0.1:${sensor.metricsPort}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^driftwatch_kernel_${name} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    assert.ok(value('watch_emitted') >= 5, text.slice(0, 500));
    assert.ok(value('watch_inline') >= 1);
    assert.ok(value('watch_no_operand') >= 1);
  });
});

const preventSkip = skip ?? (unifiedCgroupRoot() ? null : 'no unified (v2) cgroup hierarchy to put the test container in');
if (!skip && preventSkip) console.log(`# interpreted-script prevention skipped: ${preventSkip}`);

// Prevention is scoped to this test's own container (a cgroup named by id): other tests run mini-containers too.
interface Scoped {
  ct: MiniContainer;
  cg: ReturnType<typeof containerCgroup>;
  sensor: SensorProcess;
  dir: string;
}

/** A mini container in a cgroup of its own, and a sensor whose prevention policy scopes to it (policy(cgroup id)). */
async function startScoped(ct: MiniContainer, policy: (cgroupId: string) => string[]): Promise<Scoped> {
  const cg = containerCgroup(unifiedCgroupRoot()!);
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-interp-prevent-'));
  writeFileSync(join(dir, 'policy.yaml'), [...policy(cg.id), ''].join('\n'));
  const sensor = await SensorProcess.start(['--policy', join(dir, 'policy.yaml')]);
  await sensor.waitForMetric('prevention_containers_in_scope', 1, 'the test container was described and put in scope');
  return { ct, cg, sensor, dir };
}

async function stopScoped(s: Scoped | undefined): Promise<void> {
  const code = await s?.sensor.stop('SIGTERM');
  s?.ct.destroy();
  s?.cg.remove();
  if (s) rmSync(s.dir, { recursive: true, force: true });
  assert.equal(code, 0, s?.sensor.stderr.slice(-1000));
  s?.sensor.cleanup();
}

describe('interpreted scripts with prevention (real kernel: held stopped, killed through a pidfd)', { skip: preventSkip ?? false }, () => {
  let scoped: Scoped;
  let ct: MiniContainer;
  let sensor: SensorProcess;
  let cg: ReturnType<typeof containerCgroup>;

  before(async () => {
    const mini = new MiniContainer();
    mkdirSync(join(mini.lower, 'app'), { recursive: true });
    writeFileSync(join(mini.lower, 'app', 'entry.sh'), 'echo ran > /tmp/marker-image\n');
    scoped = await startScoped(mini, (id) => [
      'signatures:',
      '  drift.interpreted_script: { action: prevent }',
      `prevention: { scope: { containers: ['${id}'] }, scriptHold: { timeout: 5s, onTimeout: continue } }`,
      'exceptions:',
      '  - signature: drift.interpreted_script',
      '    executable: /opt/ok/**',
    ]);
    ({ ct, sensor, cg } = scoped);
  });

  after(() => stopScoped(scoped));

  test('a dropped script run through sh writes no marker; the image script and an excepted one run; the shell goes on', async () => {
    const n = randomBytes(4).toString('hex');
    const r = ct.run(
      [
        `printf 'echo ran > /tmp/marker-dropped\\n' > /tmp/x-${n}.sh; sh /tmp/x-${n}.sh p${n}; echo "dropped rc=$?"`,
        `printf 'echo ran > /tmp/marker-shm\\n' > /dev/shm/y-${n}.sh; sh /dev/shm/y-${n}.sh q${n}; echo "shm rc=$?"`,
        `sh /app/entry.sh i${n}; echo "image rc=$?"`,
        `mkdir -p /opt/ok; printf 'echo ran > /tmp/marker-ok\\n' > /opt/ok/z.sh; sh /opt/ok/z.sh o${n}; echo "ok rc=$?"`,
        'ls /tmp | grep marker || true',
      ].join('; '),
      { timeoutMs: 120_000, cgroup: cg.path },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /marker-dropped/, 'the dropped script never ran');
    assert.doesNotMatch(r.stdout, /marker-shm/, 'the tmpfs script never ran');
    assert.match(r.stdout, /dropped rc=137/, 'the interpreter was killed (SIGKILL), the shell went on');
    assert.match(r.stdout, /marker-image/, 'the image script ran: its interpreter was continued');
    assert.match(r.stdout, /marker-ok/, 'the excepted script ran');
    const f = await sensor.finding(isScriptFinding(`p${n}`), 'prevented script finding');
    assert.equal(f.action, 'prevented');
    assert.equal(f.process.script.layer, 'UPPER_NEW');
    assert.equal(f.process.script.sha256, sha('echo ran > /tmp/marker-dropped\n'));
    const text = await (await fetch(`http://127.0.0.1:${sensor.metricsPort}/metrics`)).text();
    assert.ok(Number(/^driftwatch_held_execs_total\{verdict="killed"\} (\d+)$/m.exec(text)?.[1]) >= 2, text.split('\n').filter((l) => l.includes('held')).join('\n'));
    assert.ok(Number(/^driftwatch_held_execs_total\{verdict="continued"\} (\d+)$/m.exec(text)?.[1]) >= 2);
    assert.ok(Number(/^driftwatch_kernel_watch_held (\d+)$/m.exec(text)?.[1]) >= 4);
  });
});

describe('interpreted scripts with prevention in a dry run (real kernel: nothing held, findings say would_prevent)', { skip: preventSkip ?? false }, () => {
  let scoped: Scoped;
  let ct: MiniContainer;
  let sensor: SensorProcess;
  let cg: ReturnType<typeof containerCgroup>;

  before(async () => {
    scoped = await startScoped(new MiniContainer(), (id) => [
      'signatures:',
      '  drift.interpreted_script: { action: prevent }',
      `prevention: { dryRun: true, scope: { containers: ['${id}'] } }`,
    ]);
    ({ ct, sensor, cg } = scoped);
  });

  after(() => stopScoped(scoped));

  test('a dropped script runs, its finding says would_prevent, and no interpreter was held', async () => {
    const n = randomBytes(4).toString('hex');
    // The script outlives the record's handling (the mini container has no long-lived pid 1 to read it through).
    const r = ct.run(`printf 'echo ran > /tmp/marker-dry\\nsleep 2\\n' > /tmp/d-${n}.sh; sh /tmp/d-${n}.sh d${n}; echo "rc=$?"; ls /tmp | grep marker || true`, {
      timeoutMs: 120_000,
      cgroup: cg.path,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /rc=0/, 'the interpreter ran to its end');
    assert.match(r.stdout, /marker-dry/, 'the dropped script ran: a dry run stops nothing');
    const f = await sensor.finding(isScriptFinding(`d${n}`), 'dry-run script finding');
    assert.equal(f.action, 'would_prevent');
    assert.equal(f.process.script.layer, 'UPPER_NEW');
    assert.equal(await sensor.metric('kernel_watch_held'), 0, 'nothing was held');
  });
});
