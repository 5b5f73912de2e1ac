import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CriClient, criServiceDefinition } from '../../src/enrich/cri-client.js';
import { MetadataResolver, type ContainerMetadata, type MetadataSource } from '../../src/enrich/metadata.js';
import { OciStateSource } from '../../src/enrich/oci-state.js';

const ID = 'a'.repeat(64);

function source(answer: (id: string) => Promise<ContainerMetadata | null>, exists?: (id: string) => Promise<boolean>): MetadataSource & { calls: number } {
  const s = {
    name: 'fake',
    calls: 0,
    lookup(id: string) {
      s.calls++;
      return answer(id);
    },
    ...(exists ? { exists } : {}),
  };
  return s;
}

test('resolver: caches answers and counts hits', async () => {
  const src = source(async (id) => ({ id, runtime: 'podman', name: 'web' }));
  const r = new MetadataResolver([src]);
  assert.equal((await r.resolve(ID))?.name, 'web');
  assert.equal((await r.resolve(ID))?.name, 'web');
  assert.equal(src.calls, 1);
  assert.equal(r.metrics.cache_hits, 1);
});

test('resolver: "not found" is cached too (negative caching)', async () => {
  const src = source(async () => null);
  const r = new MetadataResolver([src], { negativeTtlMs: 60_000 });
  assert.equal(await r.resolve(ID), undefined);
  assert.equal(await r.resolve(ID), undefined);
  assert.equal(src.calls, 1);
  assert.equal(r.metrics.negative_hits, 1);
});

test('resolver: a slow source does not hold the caller past waitMs; the answer lands in the cache', async () => {
  let release!: () => void;
  const gate = new Promise<void>((res) => (release = res));
  const src = source(async (id) => {
    await gate;
    return { id, runtime: 'containerd', name: 'slow' };
  });
  const r = new MetadataResolver([src], { waitMs: 20 });
  assert.equal(await r.resolve(ID), undefined);
  assert.equal(r.metrics.wait_timeouts, 1);
  release();
  await new Promise((res) => setTimeout(res, 10));
  assert.equal((await r.resolve(ID))?.name, 'slow');
  assert.equal(src.calls, 1, 'the in-flight lookup was reused, not repeated');
});

test('resolver: concurrency is bounded; excess lookups are rejected and counted', async () => {
  const src = source(() => new Promise(() => {}));
  const r = new MetadataResolver([src], { maxConcurrent: 2, waitMs: 5 });
  await Promise.all(['1', '2', '3', '4'].map((c) => r.resolve(c.repeat(64))));
  assert.equal(src.calls, 2);
  assert.equal(r.metrics.queue_rejected, 2);
});

test('resolver: a failing source falls through to the next one and is counted', async () => {
  const broken = source(async () => {
    throw new Error('socket gone');
  });
  const ok = source(async (id) => ({ id, runtime: 'cri-o', name: 'x' }));
  const r = new MetadataResolver([broken, ok]);
  assert.equal((await r.resolve(ID))?.runtime, 'cri-o');
  assert.equal(r.metrics.lookup_errors, 1);
});

test('resolver: sweep evicts containers their runtime no longer knows', async () => {
  const alive = new Set([ID]);
  const src = source(async (id) => ({ id, runtime: 'podman' }), async (id) => alive.has(id));
  const r = new MetadataResolver([src]);
  await r.resolve(ID);
  assert.equal(await r.sweep(), 0);
  alive.delete(ID);
  assert.equal(await r.sweep(), 1);
  assert.equal(r.size, 0);
});

test('CRI client: reads name, image, digest and pod labels from a CRI server over a unix socket', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dw-cri-'));
  const sock = join(dir, 'cri.sock');
  const server = new grpc.Server();
  server.addService(criServiceDefinition(), {
    ContainerStatus: (call: grpc.ServerUnaryCall<{ containerId: string }, object>, cb: grpc.sendUnaryData<object>) => {
      if (call.request.containerId !== ID) return cb({ code: grpc.status.NOT_FOUND, details: 'no such container' });
      cb(null, {
        status: {
          id: ID,
          metadata: { name: 'api' },
          image: { image: 'registry.local/api:1.2' },
          imageRef: 'registry.local/api@sha256:' + 'c'.repeat(64),
          labels: {
            'io.kubernetes.pod.name': 'api-7d9f',
            'io.kubernetes.pod.namespace': 'shop',
            'io.kubernetes.pod.uid': '0f4c8c3e-1a2b-4c5d-8e9f-0123456789ab',
            'io.kubernetes.container.name': 'api',
          },
        },
      });
    },
    ListContainers: (_c: unknown, cb: grpc.sendUnaryData<object>) => cb(null, { containers: [] }),
  });
  await new Promise<void>((res, rej) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  const client = new CriClient(sock);
  try {
    const m = await client.status(ID);
    assert.deepEqual(m, {
      id: ID,
      runtime: 'containerd',
      name: 'api',
      image: 'registry.local/api:1.2',
      imageId: 'registry.local/api@sha256:' + 'c'.repeat(64),
      labels: {
        'io.kubernetes.pod.name': 'api-7d9f',
        'io.kubernetes.pod.namespace': 'shop',
        'io.kubernetes.pod.uid': '0f4c8c3e-1a2b-4c5d-8e9f-0123456789ab',
        'io.kubernetes.container.name': 'api',
      },
      kubernetes: { namespace: 'shop', pod: 'api-7d9f', podUid: '0f4c8c3e-1a2b-4c5d-8e9f-0123456789ab', container: 'api' },
    });
    assert.equal(await client.status('b'.repeat(64)), null, 'NOT_FOUND is a miss, not an error');
  } finally {
    client.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('OCI state: containerd and CRI-O annotations become kubernetes metadata', async () => {
  const root = mkdtempSync(join(tmpdir(), 'dw-oci-'));
  const write = (id: string, labels: string[]) => {
    mkdirSync(join(root, id));
    writeFileSync(join(root, id, 'state.json'), JSON.stringify({ id, config: { labels } }));
  };
  const containerd = '1'.repeat(64);
  const crio = '2'.repeat(64);
  write(containerd, [
    'io.kubernetes.cri.container-type=container',
    'io.kubernetes.cri.container-name=web',
    'io.kubernetes.cri.sandbox-name=web-5f6',
    'io.kubernetes.cri.sandbox-namespace=prod',
    'io.kubernetes.cri.sandbox-uid=11111111-2222-3333-4444-555555555555',
    'io.kubernetes.cri.image-name=docker.io/library/nginx:1.27',
    'bundle=/run/containerd/io.containerd.runtime.v2.task/k8s.io/x',
  ]);
  write(crio, [
    'io.kubernetes.cri-o.ImageName=quay.io/app:2',
    'io.kubernetes.cri-o.ImageRef=sha256:' + 'd'.repeat(64),
    'io.kubernetes.pod.name=app-0',
    'io.kubernetes.pod.namespace=batch',
    'io.kubernetes.pod.uid=66666666-7777-8888-9999-000000000000',
    'io.kubernetes.container.name=app',
  ]);
  try {
    const src = new OciStateSource([root]);
    assert.deepEqual(await src.lookup(containerd), {
      id: containerd, runtime: 'containerd', name: 'web', image: 'docker.io/library/nginx:1.27',
      kubernetes: { pod: 'web-5f6', namespace: 'prod', podUid: '11111111-2222-3333-4444-555555555555', container: 'web' },
    });
    assert.deepEqual(await src.lookup(crio), {
      id: crio, runtime: 'cri-o', name: 'app', image: 'quay.io/app:2', imageId: 'sha256:' + 'd'.repeat(64),
      kubernetes: { pod: 'app-0', namespace: 'batch', podUid: '66666666-7777-8888-9999-000000000000', container: 'app' },
    });
    assert.equal(await src.lookup('3'.repeat(64)), null);
    assert.equal(await src.exists(crio), true);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('podman state: a node whose first container starts after the sensor still resolves it', async () => {
  const { PodmanStore } = await import('../../src/enrich/podman-store.js');
  const root = mkdtempSync(join(tmpdir(), 'dw-podman-'));
  try {
    // A fresh node: the storage root exists (an image was imported) but no container was ever created.
    mkdirSync(join(root, 'overlay-images'), { recursive: true });
    const imageId = 'b'.repeat(64);
    writeFileSync(join(root, 'overlay-images', 'images.json'), JSON.stringify([{ id: imageId, names: ['localhost/app:1'] }]));
    const store = new PodmanStore(root, 100);
    assert.equal(await store.available(), true, 'podman is available before its first container');
    assert.equal(await store.lookup(ID), null);
    mkdirSync(join(root, 'overlay-containers'));
    const meta = JSON.stringify({ name: 'web-1', 'image-name': 'localhost/app:1' });
    writeFileSync(join(root, 'overlay-containers', 'containers.json'), JSON.stringify([{ id: ID, names: ['web-1'], image: imageId, metadata: meta }]));
    const found = await store.lookup(ID);
    assert.equal(found?.name, 'web-1');
    assert.equal(found?.image, 'localhost/app:1');
    assert.equal(found?.imageId, `sha256:${imageId}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
