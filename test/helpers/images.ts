// Test images without a registry: the busybox-static rootfs as a plain tar
// (podman/docker import) and as an OCI image layout tar (ctr images import,
// which makes it visible to containerd's CRI at once).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dwexecBinary } from './minicontainer.js';

export const APPLETS = ['sh', 'true', 'cp', 'chmod', 'ln', 'cat', 'echo', 'mkdir', 'rm', 'sleep', 'ls', 'printf'];

let rootfsTar: Buffer | undefined;
/** A rootfs with /bin/busybox, its applet links and dwexec, as an uncompressed tar. */
export function busyboxRootfsTar(): Buffer {
  if (rootfsTar) return rootfsTar;
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-img-'));
  try {
    const root = join(dir, 'rootfs');
    for (const d of ['bin', 'tmp', 'proc', 'sys', 'dev', 'etc']) mkdirSync(join(root, d), { recursive: true });
    cpSync('/bin/busybox', join(root, 'bin', 'busybox'));
    for (const a of APPLETS) symlinkSync('busybox', join(root, 'bin', a));
    cpSync(dwexecBinary(), join(root, 'bin', 'dwexec'));
    execFileSync('tar', ['--owner=0', '--group=0', '-C', root, '-cf', join(dir, 'rootfs.tar'), '.']);
    rootfsTar = readFileSync(join(dir, 'rootfs.tar'));
    return rootfsTar;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** An OCI image layout tar of the busybox rootfs named `ref`, whose default command is cmd; and its config digest (the image id). */
export function busyboxOciArchive(ref: string, cmd: string[]): { tar: Buffer; configDigest: string } {
  const layer = busyboxRootfsTar();
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: cmd, Env: ['PATH=/bin'] },
    rootfs: { type: 'layers', diff_ids: [sha(layer)] },
  });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: Buffer.byteLength(config) },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(layer), size: layer.length }],
  });
  const index = JSON.stringify({
    schemaVersion: 2,
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: sha(manifest),
        size: Buffer.byteLength(manifest),
        annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': ref.split(':').pop() },
      },
    ],
  });
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-oci-'));
  try {
    const blobs = join(dir, 'layout', 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    for (const b of [layer, Buffer.from(config), Buffer.from(manifest)]) writeFileSync(join(blobs, sha(b).slice(7)), b);
    writeFileSync(join(dir, 'layout', 'index.json'), index);
    writeFileSync(join(dir, 'layout', 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    execFileSync('tar', ['-C', join(dir, 'layout'), '-cf', join(dir, 'image.tar'), '.']);
    return { tar: readFileSync(join(dir, 'image.tar')), configDigest: sha(config) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
