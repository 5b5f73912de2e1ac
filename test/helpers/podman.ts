// Real podman containers for tests: a busybox image imported from a local
// rootfs (no registry is reachable), run with runc and the flags this kind of
// host needs. Every container a test starts is removed in cleanup().
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, cpSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { dwexecBinary } from './minicontainer.js';

export const TEST_IMAGE = 'localhost/driftwatch-test-busybox:1';
/** The same image with a world-writable /tmp, for containers run as an unprivileged user. */
export const USER_TEST_IMAGE = 'localhost/driftwatch-test-busybox-user:1';
const RUN_FLAGS = ['--runtime=runc', '--network=none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
const APPLETS = ['sh', 'true', 'cp', 'chmod', 'ln', 'cat', 'echo', 'mkdir', 'rm', 'sleep', 'ls'];

export function podmanSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'podman tests need root';
  if (spawnSync('podman', ['--version']).status !== 0) return 'podman is not installed';
  if (spawnSync('runc', ['--version']).status !== 0) return 'runc is not installed';
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed';
  return null;
}

function podman(args: string[], timeout = 60_000): string {
  return execFileSync('podman', args, { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Imports the test image once (idempotent). */
export function ensureTestImage(): void {
  importImage(TEST_IMAGE, 0o755);
}

export function ensureUserTestImage(): void {
  importImage(USER_TEST_IMAGE, 0o1777);
}

function importImage(tag: string, tmpMode: number): void {
  if (spawnSync('podman', ['image', 'exists', tag]).status === 0) return;
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-img-'));
  try {
    const root = join(dir, 'rootfs');
    for (const d of ['bin', 'tmp', 'proc', 'sys', 'dev', 'etc']) mkdirSync(join(root, d), { recursive: true });
    chmodSync(join(root, 'tmp'), tmpMode);
    cpSync('/bin/busybox', join(root, 'bin', 'busybox'));
    for (const a of APPLETS) symlinkSync('busybox', join(root, 'bin', a));
    cpSync(dwexecBinary(), join(root, 'bin', 'dwexec'));
    execFileSync('tar', ['-C', root, '-cf', join(dir, 'rootfs.tar'), '.']);
    podman(['import', join(dir, 'rootfs.tar'), tag]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export class PodmanContainers {
  private names: string[] = [];
  private started: string[] = [];

  ids(): string[] {
    return [...this.started];
  }

  /** Starts a detached container running `script`; returns its name and 64-hex id. */
  run(script: string, opts: { name?: string; labels?: Record<string, string>; user?: string; image?: string } = {}): { name: string; id: string } {
    const name = opts.name ?? `dwtest-${randomBytes(4).toString('hex')}`;
    const labels = Object.entries(opts.labels ?? {}).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
    const user = opts.user ? ['--user', opts.user] : [];
    this.names.push(name);
    const id = podman(['run', '-d', ...RUN_FLAGS, '--name', name, ...labels, ...user, opts.image ?? TEST_IMAGE, 'sh', '-c', script]);
    this.started.push(id);
    return { name, id };
  }

  exec(name: string, script: string): { status: number | null; stderr: string } {
    const r = spawnSync('podman', ['exec', name, 'sh', '-c', script], { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, stderr: r.stderr };
  }

  cleanup(): void {
    if (this.names.length) spawnSync('podman', ['rm', '-f', '-t', '0', ...this.names], { timeout: 120_000 });
    this.names = [];
  }
}
