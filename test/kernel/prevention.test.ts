// Prevention on the real kernel: drifted code never runs, everything else
// does. Each payload would write a marker; no marker may appear, the shell
// that started it goes on, and the finding says what happened.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { unifiedCgroupRoot } from '../../src/prevent/controller.js';
import { MiniContainer, containerCgroup, kernelSkipReason } from '../helpers/minicontainer.js';
import { PodmanContainers, TEST_IMAGE, ensureTestImage, podmanSkipReason } from '../helpers/podman.js';
import { SensorProcess, argsContain, type Finding } from '../helpers/sensor-process.js';

const skip = kernelSkipReason() ?? (unifiedCgroupRoot() ? null : 'no unified (v2) cgroup hierarchy to put the test container in');
if (skip) console.log(`# prevention kernel tests skipped: ${skip}`);
const podmanSkip = skip ?? podmanSkipReason();
if (!skip && podmanSkip) console.log(`# prevention podman tests skipped: ${podmanSkip}`);

const nonce = () => randomBytes(4).toString('hex');

const PREVENT_ALL = `
signatures:
  drift.new_executable: { action: prevent }
  drift.modified_executable: { action: prevent }
  drift.fileless_exec: { action: prevent }
  drift.tmpfs_exec: { action: prevent }
  drift.new_script: { action: prevent }
`;

/** A policy file the test rewrites and the sensor reloads on SIGHUP. */
class PolicyFile {
  readonly dir = mkdtempSync(join(tmpdir(), 'driftwatch-prevent-'));
  readonly path = join(this.dir, 'policy.yaml');
  constructor(text: string) {
    this.write(text);
  }
  write(text: string): void {
    writeFileSync(this.path, text);
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function reload(sensor: SensorProcess, policy: PolicyFile, text: string): Promise<void> {
  const before = (sensor.stderr.match(/reloaded: /g) ?? []).length;
  policy.write(text);
  process.kill(sensor.pid, 'SIGHUP');
  await sensor.waitFor(() => (sensor.stderr.match(/reloaded: /g) ?? []).length > before, 15_000, 'reload');
}

// Other tests on this machine run mini-containers too: prevention is scoped
// to this file's own, which sits in a cgroup that names it (by id).
describe('prevention in a minimal container (real kernel, SIGKILL at sched_process_exec)', { skip: skip ?? false }, () => {
  let ct: MiniContainer;
  let sensor: SensorProcess;
  let policy: PolicyFile;
  let cg: ReturnType<typeof containerCgroup>;
  const scoped = (extra = '') => `${PREVENT_ALL}\nprevention: { scope: { containers: ['${cg.id}'] }${extra} }\n`;

  before(async () => {
    ct = new MiniContainer();
    cg = containerCgroup(unifiedCgroupRoot()!);
    policy = new PolicyFile(`${scoped()}
exceptions:
  - signature: drift.new_executable
    executable: /opt/allowed/**
`);
    sensor = await SensorProcess.start(['--policy', policy.path]);
    assert.match(sensor.stderr, /prevention on/);
    await sensor.waitForMetric('prevention_containers_in_scope', 1, 'the test container was described and put in scope');
  });

  after(async () => {
    const code = await sensor?.stop('SIGTERM');
    ct?.destroy();
    cg?.remove();
    policy?.remove();
    assert.equal(code, 0, sensor?.stderr.slice(-1000));
    sensor.cleanup();
  });

  function run(script: string): string {
    const r = ct.run(script, { timeoutMs: 120_000, cgroup: cg.path });
    assert.equal(r.status, 0, `container script failed: ${r.stderr}`);
    return r.stdout;
  }

  test('a dropped binary, a dropped #! script, a memfd payload, an unlinked file and a /dev/shm binary never run; the shell survives', async () => {
    const n = nonce();
    const out = run(
      [
        `printf '#!/bin/sh\\necho ran > /tmp/marker-script\\n' > /tmp/dropped.sh; chmod 0755 /tmp/dropped.sh; /tmp/dropped.sh script-${n}; echo "script rc=$?"`,
        `cp /bin/busybox /tmp/busybox-new-${n}; /tmp/busybox-new-${n} sh -c 'echo ran > /tmp/marker-new' new-${n}; echo "new rc=$?"`,
        `/bin/dwexec memfd /bin/busybox-img busybox sh -c 'echo ran > /tmp/marker-memfd' memfd-${n}; echo "memfd rc=$?"`,
        `cp /bin/busybox /tmp/gone-${n}; /bin/dwexec unlinked /tmp/gone-${n} busybox sh -c 'echo ran > /tmp/marker-unlinked' unlinked-${n}; echo "unlinked rc=$?"`,
        `cp /bin/busybox /dev/shm/busybox-${n}; /dev/shm/busybox-${n} sh -c 'echo ran > /tmp/marker-shm' shm-${n}; echo "shm rc=$?"`,
        `echo >> /bin/busybox-img; /bin/busybox-img sh -c 'echo ran > /tmp/marker-modified' modified-${n}; echo "modified rc=$?"`,
        'ls /tmp | grep marker || true',
        'echo survived',
      ].join('\n'),
    );
    for (const kind of ['new', 'script', 'memfd', 'unlinked', 'shm', 'modified']) assert.match(out, new RegExp(`^${kind} rc=137$`, 'm'), `${kind} was killed (SIGKILL): ${out}`);
    assert.doesNotMatch(out, /marker/, 'no payload wrote its marker');
    assert.match(out, /^survived$/m, 'the shell that started them went on');
    const expect: Array<[string, string]> = [
      [`new-${n}`, 'drift.new_executable'],
      [`script-${n}`, 'drift.new_script'],
      [`memfd-${n}`, 'drift.fileless_exec'],
      [`unlinked-${n}`, 'drift.fileless_exec'],
      [`shm-${n}`, 'drift.tmpfs_exec'],
      [`modified-${n}`, 'drift.modified_executable'],
    ];
    for (const [token, sig] of expect) {
      const f = await sensor.finding((x) => argsContain(token)(x) && x.signature.id === sig, `${sig} finding`);
      assert.equal(f.action, 'prevented', `${sig}: ${JSON.stringify(f)}`);
    }
    assert.ok((await sensor.metric('kernel_prevented')) >= 6);
    assert.ok((await sensor.metric('findings_action_total{signature="drift.new_executable",action="prevented"}')) >= 1);
  });

  test('1,000 image-binary execs and an image #! script in the same container all run', () => {
    writeFileSync(join(ct.lower, 'bin', 'img-script.sh'), '#!/bin/sh\necho image-script-ran\n', { mode: 0o755 });
    const out = run('i=0; while [ $i -lt 1000 ]; do /bin/busybox-img echo x >> /tmp/count || exit 1; i=$((i+1)); done; wc -l < /tmp/count; /bin/img-script.sh');
    assert.equal(out.trim(), '1000\nimage-script-ran');
  });

  test('an excepted path runs and is not reported; a symlink into it does not make a dropped binary excepted', async () => {
    const n = nonce();
    const out = run(
      [
        `mkdir -p /opt/allowed; cp /bin/busybox /opt/allowed/busybox-ok; /opt/allowed/busybox-ok sh -c 'echo ran > /tmp/marker-ok' ok-${n}`,
        `cp /bin/busybox /tmp/busybox-evil; ln -s /tmp/busybox-evil /opt/allowed/busybox-link; /opt/allowed/busybox-link sh -c 'echo ran > /tmp/marker-link' link-${n}; echo "link rc=$?"`,
        'ls /tmp | grep marker || true',
      ].join('\n'),
    );
    assert.match(out, /marker-ok/, 'the excepted binary ran');
    assert.doesNotMatch(out, /marker-link/, 'the symlinked binary did not');
    assert.match(out, /^link rc=137$/m);
    const link = await sensor.finding(argsContain(`link-${n}`), 'finding for the symlinked binary');
    assert.equal(link.action, 'prevented');
    assert.equal(link.process.executable.path, '/tmp/busybox-evil');
    assert.equal(sensor.matching(argsContain(`ok-${n}`)).length, 0, 'the excepted exec is not reported');
    assert.ok((await sensor.metric('kernel_prevent_excepted')) >= 1);
  });

  test('dryRun stops nothing and reports would_prevent', async () => {
    await reload(sensor, policy, scoped(', dryRun: true'));
    const n = nonce();
    const out = run(`cp /bin/busybox /tmp/busybox-dry; /tmp/busybox-dry sh -c 'echo ran > /tmp/marker-dry' dry-${n}; ls /tmp | grep marker`);
    assert.match(out, /marker-dry/);
    const f = await sensor.finding(argsContain(`dry-${n}`), 'dry-run finding');
    assert.equal(f.action, 'would_prevent');
  });

  test('a scope the container is outside of lets it run with an alert', async () => {
    await reload(sensor, policy, `${PREVENT_ALL}\nprevention: { scope: { images: ['registry.example/payments/*'] } }\n`);
    const n = nonce();
    const out = run(`cp /bin/busybox /tmp/busybox-oos; /tmp/busybox-oos sh -c 'echo ran > /tmp/marker-oos' oos-${n}; ls /tmp | grep marker`);
    assert.match(out, /marker-oos/);
    assert.equal((await sensor.finding(argsContain(`oos-${n}`), 'out-of-scope finding')).action, 'alert');
  });

  test('SIGHUP with prevention.enabled: false lets the next drifted exec run; turning it on stops the one after', async () => {
    await reload(sensor, policy, scoped(', enabled: false'));
    const n = nonce();
    let out = run(`cp /bin/busybox /tmp/busybox-off; /tmp/busybox-off sh -c 'echo ran > /tmp/marker-off' off-${n}; ls /tmp | grep marker`);
    assert.match(out, /marker-off/);
    assert.equal((await sensor.finding(argsContain(`off-${n}`), 'finding with prevention off')).action, 'alert');
    await reload(sensor, policy, scoped());
    out = run(`cp /bin/busybox /tmp/busybox-on; /tmp/busybox-on sh -c 'echo ran > /tmp/marker-on' on-${n}; echo "rc=$?"; ls /tmp | grep marker || true`);
    assert.doesNotMatch(out, /marker-on/);
    assert.equal((await sensor.finding(argsContain(`on-${n}`), 'finding with prevention on again')).action, 'prevented');
  });

  test('a policy that cannot be enforced in the kernel is refused on reload; the running one stays', async () => {
    policy.write(`${scoped()}exceptions:\n  - { signature: drift.new_executable, args: '*--safe*' }\n`);
    process.kill(sensor.pid, 'SIGHUP');
    await sensor.waitFor(() => /args: arguments cannot be matched in the kernel/.test(sensor.stderr), 15_000, 'reload error');
    const n = nonce();
    const out = run(`cp /bin/busybox /tmp/busybox-kept; /tmp/busybox-kept sh -c 'echo ran > /tmp/marker-kept' --safe kept-${n}; ls /tmp | grep marker || true`);
    assert.doesNotMatch(out, /marker-kept/, 'still prevented under the running policy');
  });
});

describe('prevention in podman containers (real kernel, real runc)', { skip: podmanSkip ?? false }, () => {
  let sensor: SensorProcess;
  let policy: PolicyFile;
  const pods = new PodmanContainers();

  before(async () => {
    ensureTestImage();
    // In scope: containers labelled prevent=on; unknown containers alert.
    policy = new PolicyFile(`${PREVENT_ALL}\nprevention:\n  scope: { labels: { prevent: 'on' } }\n`);
    sensor = await SensorProcess.start(['--policy', policy.path]);
  });

  after(async () => {
    pods.cleanup();
    const code = await sensor?.stop();
    policy?.remove();
    assert.equal(code, 0);
    sensor.cleanup();
  });

  /** Until the sensor has put the labelled container in scope (cgroup scan, then metadata). */
  async function inScopeCount(atLeast: number): Promise<void> {
    await sensor.waitForMetric('prevention_containers_in_scope', atLeast, 'the labelled container was put in scope');
  }

  test('container start and podman exec work; drift in an in-scope container never runs; the out-of-scope one runs', async () => {
    const n = nonce();
    const before = await sensor.metric('prevention_containers_in_scope');
    const inScope = pods.run('sleep 120', { labels: { prevent: 'on' } });
    const outOfScope = pods.run('sleep 120', { labels: { prevent: 'off' } });
    await inScopeCount(before + 1);
    const script = (tag: string) =>
      `cp /bin/busybox /tmp/busybox-${tag}; /tmp/busybox-${tag} sh -c 'echo ran > /tmp/marker-${tag}' ${tag}-${n}; echo "rc=$?"; ` +
      `/bin/dwexec memfd /bin/busybox busybox sh -c 'echo ran > /tmp/marker-memfd' memfd-${tag}-${n}; ` +
      `i=0; while [ $i -lt 200 ]; do /bin/busybox true || exit 1; i=$((i+1)); done; ls /tmp | grep marker || true`;
    const a = pods.exec(inScope.name, script('in'));
    assert.equal(a.status, 0, `podman exec works in the in-scope container: ${a.stderr}`);
    const b = pods.exec(outOfScope.name, script('out'));
    assert.equal(b.status, 0, b.stderr);
    const check = (name: string, script: string) => pods.exec(name, script);
    assert.equal(check(inScope.name, 'if ls /tmp | grep -q marker; then exit 1; fi').status, 0, 'no marker in the in-scope container');
    assert.equal(check(outOfScope.name, 'test -f /tmp/marker-out && test -f /tmp/marker-memfd').status, 0, 'both payloads ran out of scope');
    const fin: Finding = await sensor.finding(argsContain(`in-${n}`), 'in-scope finding');
    assert.equal(fin.action, 'prevented');
    assert.equal(fin.container.id, inScope.id);
    assert.equal((await sensor.finding(argsContain(`memfd-in-${n}`), 'in-scope memfd finding')).action, 'prevented');
    assert.equal((await sensor.finding(argsContain(`out-${n}`), 'out-of-scope finding')).action, 'alert');
    assert.equal(TEST_IMAGE, fin.container['image']);
  });
});
