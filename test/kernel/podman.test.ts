// Drift in real podman containers: identity, metadata and exec sessions.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { kernelSkipReason, waitForBpfObjectsGone } from '../helpers/minicontainer.js';
import { PodmanContainers, TEST_IMAGE, ensureTestImage, podmanSkipReason } from '../helpers/podman.js';
import { SensorProcess, argsContain, correlatedWith } from '../helpers/sensor-process.js';
import { runtimeScenarios } from './runtime-scenarios.js';

const skip = kernelSkipReason() ?? podmanSkipReason();
if (skip) console.log(`# podman tests skipped: ${skip}`);

describe('drift in podman containers (real kernel, real runc)', { skip: skip ?? false }, () => {
  let sensor: SensorProcess;
  const pods = new PodmanContainers();
  const nonce = () => randomBytes(4).toString('hex');

  before(async () => {
    ensureTestImage();
    sensor = await SensorProcess.start();
  });

  after(async () => {
    const ids = pods.ids();
    pods.cleanup();
    for (const id of ids) {
      assert.equal(existsSync(`/sys/fs/cgroup/libpod_parent/libpod-${id}`), false, `cgroup of ${id} removed`);
      assert.equal(existsSync(`/sys/fs/cgroup/machine.slice/libpod-${id}.scope`), false, `cgroup of ${id} removed`);
    }
    assert.equal(await sensor.stop(), 0);
    sensor.cleanup();
    assert.deepEqual(await waitForBpfObjectsGone(sensor.bpf), []);
  });

  test('drift in the container process tree: id, name, image, runtime, not an exec session', async () => {
    const n = nonce();
    const { name, id } = pods.run(`cp /bin/busybox /tmp/busybox-${n}; exec /tmp/busybox-${n} sleep 30 ${n}`, {
      labels: { team: 'payments' },
    });
    const f = await sensor.finding(argsContain(n), 'finding from podman run');
    assert.equal(f.signature.id, 'drift.new_executable');
    assert.equal(f.container.id, id);
    assert.equal(f.container['runtime'], 'podman');
    assert.equal(f.container['name'], name);
    assert.equal(f.container['image'], TEST_IMAGE);
    assert.match(String(f.container['imageId']), /^sha256:[0-9a-f]{64}$/);
    assert.equal(f.process['execSession'], false);
    assert.equal(f.process.pid, 1, 'exec replaced the container init');
    assert.equal(f.process.executable.path, `/tmp/busybox-${n}`);
  });

  test('drift inside podman exec carries the container name, image and the exec-session flag', async () => {
    const n = nonce();
    const { name, id } = pods.run('sleep 60');
    const r = pods.exec(name, `cp /bin/busybox /tmp/busybox-${n}; /tmp/busybox-${n} true ${n}`);
    assert.equal(r.status, 0, r.stderr);
    const f = await sensor.finding(argsContain(n), 'finding from podman exec');
    assert.equal(f.container.id, id);
    assert.equal(f.container['name'], name);
    assert.equal(f.container['image'], TEST_IMAGE);
    assert.equal(f.process['execSession'], true);
    const ancestry = f.process['ancestry'] as Array<{ comm: string }>;
    // runc exec's child is reparented to conmon (a subreaper) once runc exits; at exec time it may be either
    assert.ok(ancestry.some((a) => a.comm === 'conmon' || a.comm === 'runc'), `ancestry ${JSON.stringify(ancestry)}`);
    const parent = f.process['parent'] as { comm?: string; executable?: string };
    assert.equal(parent.comm, ancestry[0]!.comm);
    if (parent.comm === 'conmon') assert.match(String(parent.executable), /conmon$/, 'the live parent\'s executable is read');
  });

  test('five containers at once: each drift is attributed to its own container', async () => {
    const started = Array.from({ length: 5 }, () => {
      const n = nonce();
      return { n, ...pods.run(`cp /bin/busybox /tmp/busybox-${n}; /tmp/busybox-${n} true ${n}; sleep 30`) };
    });
    for (const c of started) {
      const f = await sensor.finding(argsContain(c.n), `finding for ${c.name}`);
      assert.equal(f.container.id, c.id);
      assert.equal(f.container['name'], c.name);
    }
    assert.equal(new Set(started.map((c) => c.id)).size, 5);
  });

  test('image binaries and the runtime\'s own work produce nothing', async () => {
    const before = sensor.findings.length;
    const n = nonce();
    const { name, id } = pods.run(`ls / >/dev/null; cat /proc/self/status >/dev/null; true ${n}; sleep 30`);
    assert.equal(pods.exec(name, 'ls /bin >/dev/null; echo ok >/dev/null').status, 0);
    // a barrier drift in the same container proves everything before it was delivered
    const b = nonce();
    assert.equal(pods.exec(name, `cp /bin/busybox /tmp/busybox-${b}; /tmp/busybox-${b} true ${b}`).status, 0);
    await sensor.finding(argsContain(b), 'barrier finding');
    // only this container's findings: other containers on the machine may drift meanwhile
    const unexpected = sensor.findings.slice(before).filter((f) => f.container.id === id && !argsContain(b)(f) && !correlatedWith(b)(f));
    assert.deepEqual(unexpected.map((f) => `${f.signature.id} ${f.process.executable.path} ${f.process.comm}`), []);
  });
});

describe('field scenarios on podman (real kernel, real runc)', { skip: skip ?? false }, () => {
  let sensor: SensorProcess;
  const pods = new PodmanContainers();

  before(async () => {
    ensureTestImage();
    sensor = await SensorProcess.start();
  });

  after(async () => {
    pods.cleanup();
    assert.equal(await sensor.stop(), 0);
    sensor.cleanup();
  });

  runtimeScenarios<{ id: string; name: string }>('podman', () => sensor, {
    run: async (script) => pods.run(script),
    exec: async (c, script) => pods.exec(c.name, script).status ?? -1,
    waitExited: async (c) => void spawnSync('podman', ['wait', c.name], { timeout: 60_000 }),
    expectIdentity(f, c) {
      assert.equal(f.container['runtime'], 'podman');
      assert.equal(f.container['name'], c.name);
      assert.equal(f.container['image'], TEST_IMAGE);
      assert.match(String(f.container['imageId']), /^sha256:[0-9a-f]{64}$/);
    },
  });
});

describe('custom signatures and policy on real podman containers', { skip: skip ?? false }, () => {
  test('the example signature fires for curl in an exec session; a policy exception silences a path', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join, resolve, dirname } = await import('node:path');
    const { fileURLToPath } = await import('node:url');
    const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
    const dir = mkdtempSync(join(tmpdir(), 'dw-policy-'));
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'exceptions:\n  - executable: "/opt/busybox-allowed-*"\n    reason: the build tool of this test\n');
    ensureTestImage();
    const sensor = await SensorProcess.start(['--signatures', join(root, 'examples', 'signatures'), '--policy', policy]);
    const pods = new PodmanContainers();
    try {
      const { name } = pods.run('mkdir -p /opt; sleep 60');
      const n = randomBytes(4).toString('hex');
      assert.equal(pods.exec(name, `cp /bin/busybox /opt/busybox-allowed-${n}; /opt/busybox-allowed-${n} true ${n}`).status, 0);
      pods.exec(name, `cp /bin/busybox /tmp/curl; /tmp/curl ${n} 2>/dev/null; true`);
      const f = await sensor.finding((x) => x.signature.id === 'example.network_tool_in_exec_session', 'custom signature finding');
      assert.equal(f.signature.data['tool'], 'curl');
      assert.equal(f.container['name'], name);
      await sensor.finding((x) => x.signature.id === 'drift.new_executable' && x.process.executable.path === '/tmp/curl', 'built-in finding for the same exec');
      assert.deepEqual(sensor.matching(argsContain(n)).filter((x) => String(x.process.executable.path).startsWith('/opt/')), [], 'excepted by policy');
    } finally {
      pods.cleanup();
      assert.equal(await sensor.stop(), 0);
      sensor.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
