// Prevention in real Docker containers: a private dockerd over a private
// containerd, the sensor reading them over the Engine API. Drifted code in a
// container in scope never runs, whether its container's own shell or a
// docker exec session starts it; image binaries, container start and docker
// exec work; a container out of scope runs its drift with an alert.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PrivateDocker, dockerSkipReason } from '../helpers/docker.js';
import { kernelSkipReason, waitForBpfObjectsGone } from '../helpers/minicontainer.js';
import { SensorProcess, argsContain } from '../helpers/sensor-process.js';

const skip = kernelSkipReason() ?? dockerSkipReason();
if (skip) console.log(`# prevention docker tests skipped: ${skip}`);

const IMAGE = 'localhost/driftwatch-prevent-busybox:1';
const nonce = () => randomBytes(4).toString('hex');

describe('prevention in Docker containers (real dockerd, containerd, runc)', { skip: skip ?? false }, () => {
  let docker: PrivateDocker;
  let sensor: SensorProcess;
  let policyDir: string;
  // Other engineers' containers run on this machine: the scope is a label
  // value only this run's containers carry.
  const run = nonce();
  const IN = { 'driftwatch.test/prevent': run };
  const OUT = { 'driftwatch.test/prevent': `not-${run}` };

  before(async () => {
    docker = await PrivateDocker.start();
    await docker.importImage(IMAGE);
    policyDir = mkdtempSync(join(tmpdir(), 'driftwatch-prevent-docker-'));
    const policy = join(policyDir, 'policy.yaml');
    writeFileSync(
      policy,
      [
        'signatures:',
        '  drift.new_executable: { action: prevent }',
        '  drift.fileless_exec: { action: prevent }',
        '  drift.new_script: { action: prevent }',
        'prevention:',
        `  scope: { labels: { 'driftwatch.test/prevent': '${run}' } }`,
        '',
      ].join('\n'),
    );
    sensor = await SensorProcess.start(['--policy', policy, '--docker-socket', docker.socket, '--cri-socket', join(docker.dir, 'no-cri.sock')]);
    assert.match(sensor.stderr, /prevention on/);
  });

  after(async () => {
    const code = await sensor?.stop();
    sensor?.cleanup();
    await docker?.stop();
    if (policyDir) rmSync(policyDir, { recursive: true, force: true });
    assert.equal(code, 0, sensor?.stderr.slice(-1000));
    assert.deepEqual(docker?.leftovers() ?? [], [], 'no container, mount, cgroup or directory left behind');
    assert.deepEqual(await waitForBpfObjectsGone(sensor.bpf), [], 'no program or link of this sensor left');
  });

  /** Until the sensor has described `atLeast` containers as in scope (cgroup scan, then the Engine API). */
  async function inScope(atLeast: number): Promise<void> {
    await sensor.waitForMetric('prevention_containers_in_scope', atLeast, 'the labelled container was put in scope', 30_000);
  }

  /** A docker exec whose exit code says whether `script` held. */
  async function holds(id: string, script: string): Promise<boolean> {
    return (await docker.exec(id, script)) === 0;
  }

  /** Until a dropped probe binary is stopped in the container: the sensor has it in scope (a gauge
   * count can stand still while another container leaves the scope). */
  async function untilStopped(id: string): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (let k = 0; ; k++) {
      if (await holds(id, `cp /bin/busybox /tmp/probe-${k}; /tmp/probe-${k} true; test $? -eq 137`)) return;
      assert.ok(Date.now() < deadline, `the labelled container was put in scope: ${sensor.stderr.slice(-1000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function untilFile(id: string, path: string): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (!(await holds(id, `test -f ${path}`))) {
      assert.ok(Date.now() < deadline, `${path} appeared in the container`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  test("a dropped binary started by a docker run container's own shell never runs; the shell survives; the finding says prevented", async () => {
    const n = nonce();
    const before = await sensor.metric('prevention_containers_in_scope');
    // The container's main shell waits for the go-ahead, so the drop happens
    // once the sensor has the container in scope.
    const c = await docker.run(
      IMAGE,
      `while [ ! -f /tmp/go ]; do sleep 0.1; done; ` +
        `cp /bin/busybox /tmp/busybox-main; /tmp/busybox-main sh -c 'echo ran > /tmp/marker-main' main-${n}; echo "rc=$?" > /tmp/rc; ` +
        `echo survived > /tmp/survived; sleep 300`,
      { labels: IN },
    );
    await inScope(before + 1);
    assert.ok(await holds(c.id, 'touch /tmp/go'), 'docker exec works in the in-scope container');
    await untilFile(c.id, '/tmp/survived');
    assert.ok(await holds(c.id, 'grep -qx rc=137 /tmp/rc'), 'the dropped binary was killed (SIGKILL)');
    assert.ok(await holds(c.id, '! test -e /tmp/marker-main'), 'its marker was never written');
    const f = await sensor.finding(argsContain(`main-${n}`), 'finding for the dropped binary');
    assert.equal(f.action, 'prevented', JSON.stringify(f));
    assert.equal(f.signature.id, 'drift.new_executable');
    assert.equal(f.container.id, c.id);
    assert.equal(f.container['runtime'], 'docker');
    assert.equal(f.container['name'], c.name);
    await docker.remove(c.id);
  });

  test('in scope, docker exec works: 1,000 image-binary execs run; a dropped binary and a memfd payload in the session never do', async () => {
    const n = nonce();
    const c = await docker.run(IMAGE, 'sleep 300', { labels: IN });
    await untilStopped(c.id);
    assert.ok(
      await holds(c.id, 'i=0; while [ $i -lt 1000 ]; do /bin/busybox true || exit 1; i=$((i+1)); done; echo done > /tmp/images-ran'),
      '1,000 image-binary execs in a docker exec session',
    );
    assert.ok(
      await holds(
        c.id,
        `cp /bin/busybox /tmp/busybox-exec; /tmp/busybox-exec sh -c 'echo ran > /tmp/marker-exec' exec-${n}; echo "rc=$?" > /tmp/rc-exec; ` +
          `/bin/dwexec memfd /bin/busybox busybox sh -c 'echo ran > /tmp/marker-memfd' memfd-${n}; echo "rc=$?" > /tmp/rc-memfd; ` +
          'echo survived > /tmp/survived-exec',
      ),
      'the exec session ran to its end',
    );
    assert.ok(await holds(c.id, 'test -f /tmp/images-ran && test -f /tmp/survived-exec'));
    assert.ok(await holds(c.id, 'grep -qx rc=137 /tmp/rc-exec && grep -qx rc=137 /tmp/rc-memfd'), 'both payloads were killed');
    assert.ok(await holds(c.id, '! ls /tmp | grep -q marker'), 'no payload wrote its marker');
    for (const [token, sig] of [[`exec-${n}`, 'drift.new_executable'], [`memfd-${n}`, 'drift.fileless_exec']] as const) {
      const f = await sensor.finding((x) => argsContain(token)(x) && x.signature.id === sig, `${sig} finding`);
      assert.equal(f.action, 'prevented', JSON.stringify(f));
      assert.equal(f.container.id, c.id);
    }
    await docker.remove(c.id);
  });

  test('an in-scope container starts, runs its image binaries and exits 0', async () => {
    const c = await docker.run(IMAGE, 'i=0; while [ $i -lt 200 ]; do /bin/busybox true || exit 1; i=$((i+1)); done; exit 0', { labels: IN });
    assert.equal(await docker.wait(c.id), 0);
    await docker.remove(c.id);
  });

  test('a container out of scope runs its dropped binary, with an alert', async () => {
    const n = nonce();
    const c = await docker.run(IMAGE, 'sleep 300', { labels: OUT });
    assert.ok(
      await holds(c.id, `cp /bin/busybox /tmp/busybox-oos; /tmp/busybox-oos sh -c 'echo ran > /tmp/marker-oos' oos-${n}`),
      'the out-of-scope payload ran',
    );
    assert.ok(await holds(c.id, 'test -f /tmp/marker-oos'));
    const f = await sensor.finding(argsContain(`oos-${n}`), 'out-of-scope finding');
    assert.equal(f.action, 'alert');
    assert.equal(f.container.id, c.id);
    // described from the Engine API: its label, not just an unknown container, put it out of scope
    assert.equal((f.container['labels'] as Record<string, string>)['driftwatch.test/prevent'], `not-${run}`);
    await docker.remove(c.id);
  });
});
