// The same field scenarios for every runtime (podman, Docker, containerd over
// CRI): drift from the container's own tree and from an exec session, dropped
// scripts (also self-deleting ones), containers whose whole tree exits at
// once, and nothing for image binaries or the runtime's own helpers. Each
// runtime's test file provides a driver and the metadata it expects.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { argsContain, type Finding, type SensorProcess } from '../helpers/sensor-process.js';

export interface RuntimeContainer {
  id: string;
}

export interface RuntimeDriver<C extends RuntimeContainer> {
  /** A container running `sh -c script` (detached). */
  run(script: string): Promise<C>;
  /** Runs `sh -c script` in the container from outside (docker exec, podman exec, CRI ExecSync); exit code. */
  exec(c: C, script: string): Promise<number>;
  /** Waits until the container's whole tree has exited. */
  waitExited(c: C): Promise<void>;
  /** What a finding from this container must say (name, image, runtime, Kubernetes fields). */
  expectIdentity(f: Finding, c: C): void;
}

export const busyboxSha256 = (): string => createHash('sha256').update(readFileSync('/bin/busybox')).digest('hex');

const nonce = () => randomBytes(4).toString('hex');
const HELPERS = /^(runc|runc:\[.*|containerd.*|dockerd|docker-init|docker-proxy|conmon|crun|podman|ctr)$/;

/** Registers the scenarios as tests of the enclosing describe(). */
export function runtimeScenarios<C extends RuntimeContainer>(name: string, sensor: () => SensorProcess, driver: RuntimeDriver<C>): void {
  const sha = busyboxSha256();
  const findingsOf = (c: C) => sensor().findings.filter((f) => f.container.id === c.id);
  let longLived: C | undefined;
  const container = async (): Promise<C> => (longLived ??= await driver.run('sleep 120'));

  test(`${name}: drift in the container's own tree has identity, metadata, session init and sha256`, async () => {
    const n = nonce();
    const c = await driver.run(`cp /bin/busybox /tmp/busybox-bb-${n}; /tmp/busybox-bb-${n} true ${n}; sleep 60`);
    const f = await sensor().finding(argsContain(n), `${name} init-tree drift`);
    assert.equal(f.signature.id, 'drift.new_executable');
    assert.equal(f.container.id, c.id);
    driver.expectIdentity(f, c);
    assert.equal(f.process['session'], 'init');
    assert.equal(f.process['execSession'], false);
    assert.equal(f.process.executable.path, `/tmp/busybox-bb-${n}`);
    assert.equal(f.process.executable['sha256'], sha, `facts: ${f.process.executable['sha256Unavailable']}`);
  });

  test(`${name}: drift from an exec session is session exec with sha256 (the process is gone, the container is not)`, async () => {
    const n = nonce();
    const c = await container();
    assert.equal(await driver.exec(c, `cp /bin/busybox /tmp/busybox-bx-${n}; /tmp/busybox-bx-${n} true ${n}`), 0);
    const f = await sensor().finding(argsContain(n), `${name} exec-session drift`);
    assert.equal(f.container.id, c.id);
    driver.expectIdentity(f, c);
    assert.equal(f.process['session'], 'exec');
    assert.equal(f.process['execSession'], true);
    assert.equal(f.process.executable['sha256'], sha, `facts: ${f.process.executable['sha256Unavailable']}`);
  });

  test(`${name}: a dropped script run from an exec session is drift.new_script`, async () => {
    const n = nonce();
    const c = await container();
    assert.equal(await driver.exec(c, `printf '#!/bin/sh\\ntrue\\n' > /tmp/s-${n}.sh; chmod +x /tmp/s-${n}.sh; /tmp/s-${n}.sh ${n}`), 0);
    const f = await sensor().finding((x) => argsContain(n)(x) && x.signature.id === 'drift.new_script', `${name} exec-session script`);
    assert.equal(f.container.id, c.id);
    driver.expectIdentity(f, c);
    assert.equal(f.process['session'], 'exec');
    assert.equal(f.signature.data['scriptLayer'], 'UPPER_NEW');
  });

  test(`${name}: a script that deletes itself in an exec session is still reported`, async () => {
    const n = nonce();
    const c = await container();
    assert.equal(await driver.exec(c, `printf '#!/bin/sh\\nrm -f "$0"\\n' > /tmp/d-${n}.sh; chmod +x /tmp/d-${n}.sh; /tmp/d-${n}.sh ${n}`), 0);
    const f = await sensor().finding((x) => argsContain(n)(x) && x.signature.id === 'drift.new_script', `${name} self-deleting script`);
    assert.equal(f.container.id, c.id);
    assert.equal(f.signature.data['scriptLayer'], 'UPPER_NEW');
  });

  test(`${name}: a container whose whole tree exits right after a dropped binary still gets identity and sha256`, async () => {
    const n = nonce();
    const c = await driver.run(`cp /bin/busybox /tmp/busybox-q-${n}; exec /tmp/busybox-q-${n} true ${n}`);
    const f = await sensor().finding(argsContain(n), `${name} short-lived drift`);
    await driver.waitExited(c);
    assert.equal(f.container.id, c.id);
    driver.expectIdentity(f, c);
    assert.equal(f.process['session'], 'init');
    assert.equal(f.process.executable['sha256'], sha, `facts: ${f.process.executable['sha256Unavailable']}`);
  });

  test(`${name}: a chmod-only copy-up run as a container exits says its content is the image's (sameAsImage)`, async () => {
    const n = nonce();
    const c = await driver.run(`chmod 0755 /bin/busybox; exec /bin/busybox true ${n}`);
    const f = await sensor().finding(argsContain(n), `${name} copy-up`);
    await driver.waitExited(c);
    assert.equal(f.signature.id, 'drift.modified_executable');
    assert.equal(f.container.id, c.id);
    assert.equal(f.process.executable.layer, 'UPPER_COPIED_UP');
    assert.equal(f.process.executable['sha256'], sha, `facts: ${f.process.executable['sha256Unavailable']}`);
    assert.equal(f.process.executable['sameAsImage'], true);
  });

  test(`${name}: a container whose whole tree exits right after a dropped script still reports it`, async () => {
    const n = nonce();
    const c = await driver.run(`printf '#!/bin/sh\\ntrue\\n' > /tmp/qs-${n}.sh; chmod +x /tmp/qs-${n}.sh; exec /tmp/qs-${n}.sh ${n}`);
    const f = await sensor().finding((x) => argsContain(n)(x) && x.signature.id === 'drift.new_script', `${name} short-lived script`);
    await driver.waitExited(c);
    assert.equal(f.container.id, c.id);
    driver.expectIdentity(f, c);
    assert.equal(f.signature.data['scriptLayer'], 'UPPER_NEW');
  });

  test(`${name}: image binaries, image scripts and the runtime's helpers produce nothing`, async () => {
    const c = await container();
    const before = sensor().findings.length;
    assert.equal(await driver.exec(c, 'ls / >/dev/null; cat /proc/self/status >/dev/null; echo ok >/dev/null'), 0);
    const img = await driver.run(`ls /bin >/dev/null; true`);
    await driver.waitExited(img);
    // a barrier drift in the same container proves everything before it was delivered
    const b = nonce();
    assert.equal(await driver.exec(c, `cp /bin/busybox /tmp/busybox-barrier-${b}; /tmp/busybox-barrier-${b} true ${b}`), 0);
    await sensor().finding(argsContain(b), `${name} barrier`);
    const ours = new Set([c.id, img.id]);
    const unexpected = sensor()
      .findings.slice(before)
      // the barrier itself may also be reported by a stream signature (an interactive intrusion)
      .filter((f) => (ours.has(f.container.id) && !argsContain(b)(f) && !f.process.executable.path.endsWith(`busybox-barrier-${b}`)) || HELPERS.test(f.process.comm));
    assert.deepEqual(unexpected.map((f) => `${f.signature.id} ${f.process.executable.path} ${f.process.comm}`), []);
    assert.deepEqual(findingsOf(img), []);
  });
}
