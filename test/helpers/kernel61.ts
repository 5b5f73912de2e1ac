// Debian's newest 6.1 cloud kernel for qemu guests: vmlinuz and overlay.ko,
// downloaded once with apt into .test-artifacts (shared with the kernel matrix).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export function kernel61(): { vmlinuz: string; overlay: string; version: string } | string {
  const dir = join(root, '.test-artifacts', 'kernels', 'linux-6.1');
  mkdirSync(dir, { recursive: true });
  if (!readdirSync(dir).some((f) => f.endsWith('.deb'))) {
    const list = spawnSync('apt-cache', ['search', '--names-only', '^linux-image-6\\.1\\.0-[0-9]+-cloud-amd64$'], { encoding: 'utf8' });
    const pkg = list.stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean).sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).pop();
    if (!pkg) return 'no linux-image-6.1.0-*-cloud-amd64 package in apt';
    const dl = spawnSync('apt-get', ['download', pkg], { cwd: dir, encoding: 'utf8', timeout: 300_000 });
    if (dl.status !== 0) return `apt-get download ${pkg} failed: ${dl.stderr.trim().split('\n').pop()}`;
  }
  const deb = readdirSync(dir).find((f) => f.endsWith('.deb'))!;
  const x = join(dir, 'x');
  if (!existsSync(x)) execFileSync('dpkg', ['-x', join(dir, deb), x]);
  const vmlinuz = readdirSync(join(x, 'boot')).find((f) => f.startsWith('vmlinuz-'))!;
  const version = vmlinuz.slice('vmlinuz-'.length);
  return { vmlinuz: join(x, 'boot', vmlinuz), overlay: join(x, 'lib', 'modules', version, 'kernel', 'fs', 'overlayfs', 'overlay.ko'), version };
}
