// Container ids from real cgroup paths (leaf and parent names, which is what
// the kernel captures), for each runtime and cgroup driver.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { containerFromCgroup } from '../../src/enrich/cgroup-container.js';

const ID = '5263ecc0d45bf5606d7846e169fbb00e4599b87c1099a70a45cad87d4dc57e20';
const POD = '0f4c8c3e-1a2b-4c5d-8e9f-0123456789ab';

const table: Array<[string, string, ReturnType<typeof containerFromCgroup>]> = [
  ['/libpod_parent/libpod-<id> (podman, cgroupfs, v1 and v2)', `/libpod_parent/libpod-${ID}`, { id: ID, runtime: 'podman' }],
  ['/machine.slice/libpod-<id>.scope (podman, systemd)', `/machine.slice/libpod-${ID}.scope`, { id: ID, runtime: 'podman' }],
  ['/system.slice/docker-<id>.scope (docker, systemd)', `/system.slice/docker-${ID}.scope`, { id: ID, runtime: 'docker' }],
  ['/docker/<id> (docker, cgroupfs)', `/docker/${ID}`, { id: ID, runtime: 'docker' }],
  ['/k8s.io/<id> (containerd, no kubelet)', `/k8s.io/${ID}`, { id: ID, runtime: 'containerd' }],
  [
    'kubepods systemd driver, containerd',
    `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${POD.replaceAll('-', '_')}.slice/cri-containerd-${ID}.scope`,
    { id: ID, runtime: 'containerd', podUid: POD },
  ],
  [
    'kubepods systemd driver, CRI-O, guaranteed QoS',
    `/kubepods.slice/kubepods-pod${POD.replaceAll('-', '_')}.slice/crio-${ID}.scope`,
    { id: ID, runtime: 'cri-o', podUid: POD },
  ],
  ['kubepods cgroupfs driver', `/kubepods/besteffort/pod${POD}/${ID}`, { id: ID, runtime: 'unknown', podUid: POD }],
  ['CRI-O conmon is not a container', `/kubepods.slice/kubepods-pod${POD.replaceAll('-', '_')}.slice/crio-conmon-${ID}.scope`, null],
  ['podman conmon is not a container', `/machine.slice/libpod-conmon-${ID}.scope`, null],
  ['a systemd service is not a container', '/system.slice/nginx.service', null],
  ['the root cgroup', '/', null],
  ['a 32-hex id is not a container id', '/process_api/080ab2a08fd976e08419924034863e96', null],
  ['user session', '/user.slice/user-1000.slice/session-3.scope', null],
];

for (const [name, path, want] of table) {
  test(`cgroup → container: ${name}`, () => {
    const parts = path.split('/').filter(Boolean);
    assert.deepEqual(containerFromCgroup(parts.at(-1) ?? '', parts.at(-2) ?? ''), want);
  });
}
