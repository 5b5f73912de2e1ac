// The sensor image end to end: scripts/build-image.sh builds the Containerfile
// on a Debian base made here (no registry is needed), the sensor runs from the
// image privileged in the host's pid namespace, and drift in a sibling podman
// container shows up in the sensor container's output.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { programIdsOf, programsStillLoaded } from '../helpers/bpf-programs.js';
import { kernelSkipReason } from '../helpers/minicontainer.js';
import { PodmanContainers, ensureTestImage, podmanSkipReason } from '../helpers/podman.js';
import type { Finding } from '../helpers/sensor-process.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const IMAGE = 'localhost/driftwatch:test';
const BASE_IMAGE = 'localhost/driftwatch-base:bookworm-1';
const RUN_FLAGS = ['--runtime=runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

function imageSkipReason(): string | null {
  const baseMade = spawnSync('podman', ['image', 'exists', BASE_IMAGE]).status === 0;
  if (!baseMade && spawnSync('debootstrap', ['--version']).error) return 'debootstrap is not installed (scripts/setup.sh installs it)';
  return null;
}

const skip = kernelSkipReason() ?? podmanSkipReason() ?? imageSkipReason();
if (skip) console.log(`# container image test skipped: ${skip}`);

function podman(args: string[], timeout = 120_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('podman', args, { encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? (r.error?.message ?? '') };
}

function podmanOk(args: string[], timeout?: number): string {
  const r = podman(args, timeout);
  assert.equal(r.status, 0, `podman ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The sensor container's findings (stdout, JSONL) and log (stderr). */
function sensorOutput(name: string): { findings: Finding[]; log: string } {
  const r = podman(['logs', name]);
  const findings: Finding[] = [];
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const f = JSON.parse(line) as Finding;
      if (f.signature) findings.push(f);
    } catch {
      // a log line on stdout is not a finding
    }
  }
  return { findings, log: r.stderr };
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs: number, what: string, detail: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${detail().slice(-3000)}`);
    await sleep(500);
  }
}

describe('the container image: built here, sensor in a privileged host-pid container', { skip: skip ?? false }, () => {
  const sensorName = `dwimg-sensor-${randomBytes(4).toString('hex')}`;
  const pods = new PodmanContainers();
  let sensorStarted = false;

  before(() => {
    ensureTestImage();
    const t0 = Date.now();
    const r = spawnSync('bash', [join(repoRoot, 'scripts', 'build-image.sh'), '--local-base', '--tag', IMAGE], {
      encoding: 'utf8',
      timeout: 30 * 60_000,
      maxBuffer: 256 << 20,
    });
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    assert.equal(r.status, 0, `scripts/build-image.sh failed (${r.error?.message ?? r.status}):\n${out.slice(-4000)}`);
    for (const line of out.split('\n')) if (line.startsWith('build-image:')) console.log(`# ${line}`);
    console.log(`# image ${IMAGE} ready in ${Math.round((Date.now() - t0) / 1000)}s`);
  }, { timeout: 35 * 60_000 });

  after(async () => {
    pods.cleanup();
    if (sensorStarted) podman(['rm', '-f', '-t', '0', sensorName]);
  });

  test('the image runs the CLI on Node 24 and carries no build toolchain', () => {
    const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal(podmanOk(['run', '--rm', ...RUN_FLAGS, '--network=none', IMAGE, '--version']), version);
    const probe = podmanOk([
      'run', '--rm', ...RUN_FLAGS, '--network=none', '--entrypoint', 'sh', IMAGE, '-c',
      'node -v; for t in clang-16 bpftool npm g++ make; do command -v $t >/dev/null && echo "has $t"; done; true',
    ]);
    assert.match(probe.split('\n')[0]!, /^v24\./);
    assert.deepEqual(probe.split('\n').slice(1).filter(Boolean), [], 'runtime stage holds no build tools');
  });

  test('the sensor in the image reports drift in a sibling podman container, then stops cleanly', async () => {
    const mounts = [
      // podman's containers.json/images.json (metadata) and upper dirs (hashing);
      // a non-recursive bind, so other containers' overlay mounts are not copied in.
      '--mount', 'type=bind,src=/var/lib/containers/storage,dst=/var/lib/containers/storage,ro=true,bind-nonrecursive=true',
    ];
    // runc's state (OCI annotations), when this host has any.
    if (existsSync('/run/runc')) mounts.push('-v', '/run/runc:/run/runc:ro');
    podmanOk([
      'run', '-d', '--name', sensorName, ...RUN_FLAGS,
      // host pid (the sensor reads /proc/<pid> of every process), host uts
      // (findings name the node, not the sensor container), no network: the
      // embedded backend and /metrics listen on the container's own loopback.
      '--privileged', '--pid=host', '--uts=host', '--cgroupns=host', '--network=none',
      ...mounts,
      IMAGE, 'run', '--jsonl', '-', '--dedup-window', '0s',
    ]);
    sensorStarted = true;
    const detail = () => {
      const s = sensorOutput(sensorName);
      const state = podman(['inspect', '--format', '{{.State.Status}} exit={{.State.ExitCode}}', sensorName]).stdout;
      return `sensor ${state}\n${s.log}`;
    };
    await waitFor(() => {
      const { log } = sensorOutput(sensorName);
      if (/attached/i.test(log)) return true;
      const state = podman(['inspect', '--format', '{{.State.Running}}', sensorName]).stdout.trim();
      if (state === 'false') throw new Error(`sensor container exited before attaching:\n${detail()}`);
      return undefined;
    }, 120_000, 'the sensor in the container to attach', detail);

    // the programs this sensor holds (others may run on the same machine)
    const sensorPid = Number(podmanOk(['inspect', '--format', '{{.State.Pid}}', sensorName]));
    const programs = programIdsOf(sensorPid);
    assert.notDeepEqual(programs, [], 'the sensor in the container holds its programs');

    const n = randomBytes(4).toString('hex');
    // busybox picks its applet by name: a "busybox" prefix keeps it working.
    const path = `/tmp/busybox-x-${n}`;
    const sibling = pods.run(`cp /bin/busybox ${path}; exec ${path} sleep 60`);
    const f = await waitFor(
      () => sensorOutput(sensorName).findings.find((x) => x.process.executable.path === path),
      60_000,
      `a finding for ${path} in ${sibling.name}`,
      detail,
    );
    assert.equal(f.signature.id, 'drift.new_executable');
    assert.equal(f.process.executable.path, path);
    assert.equal(f.process.executable.layer, 'UPPER_NEW');
    assert.equal(f.container.id, sibling.id);
    assert.equal(f.container['runtime'], 'podman');
    assert.equal(f.container['name'], sibling.name, 'podman metadata read through the mounted storage');
    assert.equal(f.host.hostname, hostname(), 'the node\'s hostname');
    assert.match(f.process.executable.sha256, /^[0-9a-f]{64}$/, 'executable hashed through /proc of a host pid');

    pods.cleanup();
    podmanOk(['stop', '-t', '30', sensorName], 60_000);
    const exit = podmanOk(['inspect', '--format', '{{.State.ExitCode}}', sensorName]);
    assert.equal(exit, '0', `sensor container exit code; log:\n${sensorOutput(sensorName).log.slice(-2000)}`);
    assert.deepEqual(await programsStillLoaded(programs), []);
  });
});
