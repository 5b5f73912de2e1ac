// Drift in Kubernetes pods on containerd, created over the CRI API as kubelet
// creates them (host-network pods, cgroupfs driver, kubelet's labels and
// annotations), kubectl-exec-style sessions through ExecSync, and containers
// that exit at once. A private containerd with its own socket, root and state.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CRI_TEST_IMAGE, PrivateContainerd, containerdSkipReason, type CriContainer, type CriPod } from '../helpers/containerd.js';
import { kernelSkipReason, waitForBpfObjectsGone } from '../helpers/minicontainer.js';
import { SensorProcess } from '../helpers/sensor-process.js';
import { runtimeScenarios } from './runtime-scenarios.js';

const skip = kernelSkipReason() ?? containerdSkipReason();
if (skip) console.log(`# containerd CRI tests skipped: ${skip}`);

describe('drift in Kubernetes pods on containerd over CRI (real containerd, runc)', { skip: skip ?? false }, () => {
  let ctrd: PrivateContainerd;
  let sensor: SensorProcess;
  let pod: CriPod;
  before(async () => {
    ctrd = await PrivateContainerd.start();
    pod = await ctrd.runPod();
    // the machine's Docker socket, if any, is not ours
    sensor = await SensorProcess.start(['--cri-socket', ctrd.socket, '--docker-socket', `${ctrd.dir}/no-docker.sock`]);
    assert.notDeepEqual(sensor.bpf.progs, [], 'the sensor holds its programs');
  });

  after(async () => {
    await sensor?.stop();
    sensor?.cleanup();
    await ctrd?.stop();
    assert.deepEqual(ctrd?.leftovers() ?? [], [], 'no pod, mount, cgroup or directory left behind');
    assert.deepEqual(await waitForBpfObjectsGone(sensor.bpf), [], 'no program or link of this sensor left');
  });

  test('the start-up log names the CRI source and its socket', () => {
    assert.match(sensor.stderr, /container metadata from: cri \(/);
  });

  runtimeScenarios<CriContainer>('containerd CRI', () => sensor, {
    run: (script) => ctrd.runContainer(pod, script),
    exec: (c, script) => ctrd.exec(c, script),
    waitExited: (c) => ctrd.waitExited(c),
    expectIdentity(f, c) {
      assert.equal(f.container['runtime'], 'containerd');
      assert.equal(f.container['name'], c.name);
      assert.equal(f.container['image'], CRI_TEST_IMAGE);
      assert.equal(f.container['imageId'], ctrd.imageId);
      assert.deepEqual(f.kubernetes, { namespace: c.pod.namespace, pod: c.pod.name, podUid: c.pod.uid, container: c.name });
      assert.equal(f.container['cgroup'], c.id, 'cgroupfs driver: the leaf is the container id');
    },
  });
});
