// A private Docker Engine for tests: Debian's dockerd over its own containerd,
// each with its own socket, root, state and exec dirs under one temp dir,
// containers in a private cgroup parent, no networking (no bridge, no
// iptables). Other dockerds on the machine are never touched. stop() removes
// every container, stops both daemons by pid, and removes their mounts,
// cgroups and files.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dockerRequest } from '../../src/enrich/docker-engine.js';
import { busyboxRootfsTar } from './images.js';
import { cgroupHierarchies, removeCgroupTree, startDaemon, stopDaemon, unmountUnder, waitForSocket, waitUntilReady } from './daemons.js';

export function dockerSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'docker tests need root';
  for (const bin of ['dockerd', 'containerd', 'runc']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} is not installed (apt-get install docker.io)`;
  }
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed';
  return null;
}

export interface DockerContainer {
  id: string;
  name: string;
}

export class PrivateDocker {
  readonly socket: string;
  readonly containerdSocket: string;
  /** Containers sit at <cgroupParent>/<id> in every hierarchy; the last component is "docker" as on a real host. */
  readonly cgroupParent: string;
  private containers: string[] = [];

  private constructor(
    readonly dir: string,
    private readonly containerd: ChildProcess,
    private readonly dockerd: ChildProcess,
    private readonly cgroupTop: string,
  ) {
    this.socket = join(dir, 'docker.sock');
    this.containerdSocket = join(dir, 'containerd.sock');
    this.cgroupParent = `/${cgroupTop}/docker`;
  }

  static async start(): Promise<PrivateDocker> {
    const dir = mkdtempSync(join(tmpdir(), 'dw-docker-'));
    const cgroupTop = `dwtest-${randomBytes(4).toString('hex')}`;
    const ctrConfig = join(dir, 'containerd.toml');
    // Docker needs no CRI: a containerd without it starts faster and opens no stream port.
    writeFileSync(
      ctrConfig,
      [
        'version = 2',
        `root = "${dir}/containerd-root"`,
        `state = "${dir}/containerd-state"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${dir}/containerd.sock"`,
        '[ttrpc]',
        `  address = "${dir}/containerd.sock.ttrpc"`,
        '',
      ].join('\n'),
    );
    const containerd = startDaemon('containerd', ['--config', ctrConfig], join(dir, 'containerd.log'));
    try {
      await waitForSocket(join(dir, 'containerd.sock'), containerd, join(dir, 'containerd.log'));
    } catch (err) {
      await stopDaemon(containerd);
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    writeFileSync(join(dir, 'daemon.json'), '{}');
    const dockerd = startDaemon(
      'dockerd',
      [
        '--host', `unix://${dir}/docker.sock`,
        '--containerd', join(dir, 'containerd.sock'),
        '--data-root', join(dir, 'docker-root'),
        '--exec-root', join(dir, 'docker-exec'),
        '--pidfile', join(dir, 'docker.pid'),
        '--config-file', join(dir, 'daemon.json'),
        '--cgroup-parent', `/${cgroupTop}/docker`,
        '--exec-opt', 'native.cgroupdriver=cgroupfs',
        '--storage-driver', 'overlay2',
        '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false', '--bridge=none',
        '--userland-proxy=false',
      ],
      join(dir, 'dockerd.log'),
    );
    const d = new PrivateDocker(dir, containerd, dockerd, cgroupTop);
    try {
      await waitForSocket(d.socket, dockerd, join(dir, 'dockerd.log'), 60_000);
      await d.waitReady();
    } catch (err) {
      await d.stop();
      throw err;
    }
    return d;
  }

  private waitReady(): Promise<void> {
    return waitUntilReady(
      async () => (await dockerRequest(this.socket, 'GET', '/_ping').catch(() => null))?.status === 200,
      30_000,
      () => `dockerd did not answer /_ping: ${this.log('dockerd')}`,
    );
  }

  log(which: 'dockerd' | 'containerd'): string {
    return readFileSync(join(this.dir, `${which}.log`), 'utf8').slice(-2000);
  }

  private async api<T = unknown>(method: string, path: string, body?: Buffer | object, timeoutMs = 60_000): Promise<T> {
    const r = await dockerRequest(this.socket, method, path, { ...(body !== undefined ? { body } : {}), timeoutMs });
    if (r.status >= 300) throw new Error(`docker ${method} ${path}: HTTP ${r.status} ${r.body.toString()}`);
    const text = r.body.toString();
    return (text && r.body[0] === 0x7b ? JSON.parse(text) : text) as T;
  }

  /** `docker import`: the busybox test rootfs as an image. */
  async importImage(ref: string): Promise<void> {
    const [repo, tag] = ref.split(':');
    await this.api('POST', `/images/create?fromSrc=-&repo=${encodeURIComponent(repo!)}&tag=${tag ?? 'latest'}`, busyboxRootfsTar());
  }

  async imageId(ref: string): Promise<string> {
    return (await this.api<{ Id: string }>('GET', `/images/${encodeURIComponent(ref)}/json`)).Id;
  }

  /** `docker run -d --network=none`: a container running `sh -c script`. */
  async run(image: string, script: string, opts: { name?: string; labels?: Record<string, string> } = {}): Promise<DockerContainer> {
    const name = opts.name ?? `dwtest-${randomBytes(4).toString('hex')}`;
    const { Id } = await this.api<{ Id: string }>('POST', `/containers/create?name=${name}`, {
      Image: image,
      Cmd: ['sh', '-c', script],
      Labels: opts.labels ?? {},
      HostConfig: { NetworkMode: 'none' },
    });
    this.containers.push(Id);
    await this.api('POST', `/containers/${Id}/start`);
    return { id: Id, name };
  }

  /** Waits for the container to exit; returns its exit code. */
  async wait(id: string): Promise<number> {
    return (await this.api<{ StatusCode: number }>('POST', `/containers/${id}/wait`)).StatusCode;
  }

  /** `docker exec`: runs `sh -c script` in the container and waits for it. */
  async exec(id: string, script: string): Promise<number> {
    const { Id } = await this.api<{ Id: string }>('POST', `/containers/${id}/exec`, { Cmd: ['sh', '-c', script], AttachStdout: false, AttachStderr: false });
    await this.api('POST', `/exec/${Id}/start`, { Detach: true, Tty: false });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const s = await this.api<{ Running: boolean; ExitCode: number | null }>('GET', `/exec/${Id}/json`);
      if (!s.Running && s.ExitCode !== null) return s.ExitCode;
      if (Date.now() > deadline) throw new Error(`docker exec in ${id} did not finish`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async remove(id: string): Promise<void> {
    await this.api('DELETE', `/containers/${id}?force=1&v=1`).catch(() => undefined);
    this.containers = this.containers.filter((c) => c !== id);
  }

  /** Removes every container, stops both daemons, and removes their mounts, cgroups and files. */
  async stop(): Promise<void> {
    for (const id of [...this.containers]) await this.remove(id);
    await stopDaemon(this.dockerd);
    await stopDaemon(this.containerd);
    unmountUnder(this.dir);
    removeCgroupTree(this.cgroupTop);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** What the machine still holds of this daemon (for leave-nothing-behind checks). */
  leftovers(): string[] {
    const out: string[] = [];
    if (existsSync(this.dir)) out.push(this.dir);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(this.dir));
    out.push(...mounts);
    for (const h of cgroupHierarchies()) if (existsSync(join(h, this.cgroupTop))) out.push(join(h, this.cgroupTop));
    return out;
  }
}

