// Drift in real Docker containers: a private dockerd over a private
// containerd (Debian's docker.io), the Docker Engine API for metadata and
// storage, docker exec sessions, containers that exit at once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PrivateDocker, dockerSkipReason, type DockerContainer } from '../helpers/docker.js';
import { kernelSkipReason, waitForBpfObjectsGone } from '../helpers/minicontainer.js';
import { SensorProcess } from '../helpers/sensor-process.js';
import { runtimeScenarios } from './runtime-scenarios.js';

const skip = kernelSkipReason() ?? dockerSkipReason();
if (skip) console.log(`# docker tests skipped: ${skip}`);

const IMAGE = 'localhost/driftwatch-test-busybox:1';
const LABELS = { 'com.docker.compose.project': 'shop', 'com.docker.compose.service': 'api' };

describe('drift in Docker containers (real dockerd, containerd, runc)', { skip: skip ?? false }, () => {
  let docker: PrivateDocker;
  let sensor: SensorProcess;
  let imageId = '';
  before(async () => {
    docker = await PrivateDocker.start();
    await docker.importImage(IMAGE);
    imageId = await docker.imageId(IMAGE);
    // the machine's own CRI socket, if any, is not ours: point the sensor at a path that does not exist
    sensor = await SensorProcess.start(['--docker-socket', docker.socket, '--cri-socket', `${docker.dir}/no-cri.sock`]);
    assert.notDeepEqual(sensor.bpf.progs, [], 'the sensor holds its programs');
  });

  after(async () => {
    await sensor?.stop();
    sensor?.cleanup();
    await docker?.stop();
    assert.deepEqual(docker?.leftovers() ?? [], [], 'no container, mount, cgroup or directory left behind');
    assert.deepEqual(await waitForBpfObjectsGone(sensor.bpf), [], 'no program or link of this sensor left');
  });

  test('the start-up log names the Docker source and its socket', () => {
    assert.match(sensor.stderr, new RegExp(`container metadata from: .*docker \\(${docker.socket.replaceAll('/', '\\/')}\\)`));
  });

  runtimeScenarios<DockerContainer>('docker', () => sensor, {
    run: (script) => docker.run(IMAGE, script, { labels: LABELS }),
    exec: (c, script) => docker.exec(c.id, script),
    waitExited: async (c) => void (await docker.wait(c.id)),
    expectIdentity(f, c) {
      assert.equal(f.container['runtime'], 'docker');
      assert.equal(f.container['name'], c.name);
      assert.equal(f.container['image'], IMAGE);
      assert.equal(f.container['imageId'], imageId);
      assert.equal((f.container['labels'] as Record<string, string>)['com.docker.compose.service'], 'api');
    },
  });
});
