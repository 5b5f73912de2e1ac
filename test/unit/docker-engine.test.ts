// The Docker Engine source against a real HTTP server on a unix socket that
// answers like dockerd (GET /containers/{id}/json): compose labels, the
// io.kubernetes.* labels cri-dockerd sets, overlay2 dirs, 404 and errors.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DockerEngine, DockerApiError } from '../../src/enrich/docker-engine.js';
import { MetadataResolver } from '../../src/enrich/metadata.js';

const dir = mkdtempSync(join(tmpdir(), 'dw-docker-api-'));
const socket = join(dir, 'docker.sock');
const COMPOSE = 'c'.repeat(64);
const K8S = 'd'.repeat(64);
const BROKEN = 'e'.repeat(64);
let server: Server;
const paths: string[] = [];

before(async () => {
  server = createServer((req, res) => {
    paths.push(`${req.method} ${req.url}`);
    const id = /^\/containers\/([0-9a-f]{64})\/json$/.exec(req.url ?? '')?.[1];
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (id === COMPOSE) {
      return send(200, {
        Id: COMPOSE,
        Name: '/shop-api-1',
        Image: 'sha256:' + '1'.repeat(64),
        Config: { Image: 'registry.local/shop/api:2.1', Labels: { 'com.docker.compose.project': 'shop', 'com.docker.compose.service': 'api' } },
        State: { Pid: 4242, Running: true },
        GraphDriver: { Name: 'overlay2', Data: { UpperDir: '/var/lib/docker/overlay2/x/diff', LowerDir: '/var/lib/docker/overlay2/l1/diff:/var/lib/docker/overlay2/l2/diff', MergedDir: '/var/lib/docker/overlay2/x/merged' } },
      });
    }
    if (id === K8S) {
      return send(200, {
        Id: K8S,
        Name: '/k8s_app_web-0_shop_0b1c2d3e-0000-4000-8000-000000000001_0',
        Image: 'sha256:' + '2'.repeat(64),
        Config: {
          Image: 'registry.local/web:1',
          Labels: {
            'io.kubernetes.pod.name': 'web-0',
            'io.kubernetes.pod.namespace': 'shop',
            'io.kubernetes.pod.uid': '0b1c2d3e-0000-4000-8000-000000000001',
            'io.kubernetes.container.name': 'app',
          },
        },
        GraphDriver: { Name: 'devicemapper', Data: {} },
      });
    }
    if (id === BROKEN) return send(500, { message: 'boom' });
    if (req.url?.startsWith('/events?')) {
      // one start event now, one a moment later, then the stream stays open like dockerd's
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write(JSON.stringify({ status: 'start', id: COMPOSE, Type: 'container', Action: 'start', Actor: { ID: COMPOSE } }) + '\n');
      setTimeout(() => res.write(JSON.stringify({ Type: 'container', Action: 'start', Actor: { ID: K8S } }) + '\n'), 50);
      return;
    }
    return send(404, { message: 'No such container' });
  });
  await new Promise<void>((res) => server.listen(socket, res));
});

after(async () => {
  await new Promise((res) => server.close(res));
  rmSync(dir, { recursive: true, force: true });
});

test('compose container: name without the slash, image, image id, labels, overlay2 upper and lower dirs', async () => {
  const m = await new DockerEngine(socket).lookup(COMPOSE);
  assert.deepEqual(m, {
    id: COMPOSE,
    runtime: 'docker',
    name: 'shop-api-1',
    image: 'registry.local/shop/api:2.1',
    imageId: 'sha256:' + '1'.repeat(64),
    labels: { 'com.docker.compose.project': 'shop', 'com.docker.compose.service': 'api' },
    rootfs: { upper: '/var/lib/docker/overlay2/x/diff', lowers: ['/var/lib/docker/overlay2/l1/diff', '/var/lib/docker/overlay2/l2/diff'] },
  });
  assert.ok(paths.includes(`GET /containers/${COMPOSE}/json`));
});

test('cri-dockerd container: the Kubernetes fields come from its io.kubernetes labels; no overlay dirs from other drivers', async () => {
  const m = await new DockerEngine(socket).lookup(K8S);
  assert.deepEqual(m?.kubernetes, { namespace: 'shop', pod: 'web-0', podUid: '0b1c2d3e-0000-4000-8000-000000000001', container: 'app' });
  assert.equal(m?.rootfs, undefined);
});

test('unknown id is null (cached as a miss); a daemon error is an error, counted by the resolver', async () => {
  const engine = new DockerEngine(socket);
  assert.equal(await engine.lookup('f'.repeat(64)), null);
  assert.equal(await engine.exists('f'.repeat(64)), false);
  await assert.rejects(engine.lookup(BROKEN), (e: unknown) => e instanceof DockerApiError && e.status === 500);
  const resolver = new MetadataResolver([engine]);
  assert.equal(await resolver.resolve(BROKEN), undefined);
  assert.equal(resolver.metrics.lookup_errors, 1);
});

test('start events prefetch metadata: the answer is cached before any event of the container', async () => {
  const engine = new DockerEngine(socket);
  const resolver = new MetadataResolver([engine]);
  const started: string[] = [];
  const stop = engine.watchStarts((id) => {
    started.push(id);
    resolver.prefetch(id, 'docker');
  });
  try {
    const deadline = Date.now() + 5_000;
    while (started.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(started, [COMPOSE, K8S]);
    assert.ok(paths.some((p) => p.startsWith('GET /events?filters=')));
    while (resolver.size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const before = resolver.metrics.lookups;
    assert.equal((await resolver.resolve(K8S))?.kubernetes?.pod, 'web-0');
    assert.equal(resolver.metrics.lookups, before, 'answered from the cache');
  } finally {
    stop();
  }
});

test('no daemon on the socket: a transport error, not a hang', async () => {
  const engine = new DockerEngine(join(dir, 'nobody.sock'), 500);
  await assert.rejects(engine.lookup(COMPOSE));
});
