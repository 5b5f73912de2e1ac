// A private containerd with its CRI plugin, driven over the CRI API exactly
// as kubelet drives it: RunPodSandbox, CreateContainer (with kubelet's labels
// and annotations), StartContainer, ExecSync, Stop/Remove. Its own socket,
// root, state and config under one temp dir; pods in a private cgroup parent
// (cgroupfs driver: this host has no systemd as init); host-network pods, so
// no CNI. Images come from a local OCI archive (`ctr images import`), the
// sandbox image too. stop() removes every pod, stops containerd by pid, and
// removes its mounts, cgroups and files.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CriClient } from '../../src/enrich/cri-client.js';
import { busyboxOciArchive } from './images.js';
import { cgroupHierarchies, removeCgroupTree, startDaemon, stopDaemon, unmountUnder, waitForSocket, waitUntilReady } from './daemons.js';

export const CRI_TEST_IMAGE = 'localhost/driftwatch-test-busybox:1';
export const CRI_SANDBOX_IMAGE = 'localhost/driftwatch-test-sandbox:1';

export function containerdSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'containerd tests need root';
  for (const bin of ['containerd', 'ctr', 'runc']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} is not installed (apt-get install containerd)`;
  }
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed';
  return null;
}

export interface CriPod {
  id: string;
  name: string;
  namespace: string;
  uid: string;
  config: Record<string, unknown>;
}

export interface CriContainer {
  id: string;
  name: string;
  pod: CriPod;
}

export class PrivateContainerd {
  readonly socket: string;
  readonly cri: CriClient;
  /** Config digest of the test image: what CRI reports as its image ref. */
  imageId = '';
  private pods: CriPod[] = [];

  private constructor(
    readonly dir: string,
    private readonly daemon: ChildProcess,
    readonly cgroupTop: string,
  ) {
    this.socket = join(dir, 'containerd.sock');
    this.cri = new CriClient(this.socket, 60_000);
  }

  static async start(): Promise<PrivateContainerd> {
    const dir = mkdtempSync(join(tmpdir(), 'dw-containerd-'));
    const cgroupTop = `dwtest-${randomBytes(4).toString('hex')}`;
    mkdirSync(join(dir, 'cni'));
    const config = join(dir, 'containerd.toml');
    writeFileSync(
      config,
      [
        'version = 2',
        `root = "${dir}/root"`,
        `state = "${dir}/state"`,
        '[grpc]',
        `  address = "${dir}/containerd.sock"`,
        '[ttrpc]',
        `  address = "${dir}/containerd.sock.ttrpc"`,
        '[plugins."io.containerd.grpc.v1.cri"]',
        `  sandbox_image = "${CRI_SANDBOX_IMAGE}"`,
        // root lacks CAP_SYS_RESOURCE here: the sandbox's oom_score_adj of -998 cannot be set
        '  restrict_oom_score_adj = true',
        '  disable_apparmor = true',
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        '  [plugins."io.containerd.grpc.v1.cri".cni]',
        `    conf_dir = "${dir}/cni"`,
        `    bin_dir = "${dir}/cni"`,
        '  [plugins."io.containerd.grpc.v1.cri".containerd]',
        '    snapshotter = "overlayfs"',
        '    default_runtime_name = "runc"',
        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '      runtime_type = "io.containerd.runc.v2"',
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
        '        SystemdCgroup = false',
        '',
      ].join('\n'),
    );
    const log = join(dir, 'containerd.log');
    const daemon = startDaemon('containerd', ['--config', config], log);
    const c = new PrivateContainerd(dir, daemon, cgroupTop);
    try {
      await waitForSocket(c.socket, daemon, log);
      await c.waitReady();
      c.importImage(CRI_SANDBOX_IMAGE, ['sleep', '100000']);
      c.imageId = c.importImage(CRI_TEST_IMAGE, ['sh']);
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  private waitReady(): Promise<void> {
    return waitUntilReady(
      () => this.cri.call('Version', { version: 'v1' }, { deadlineMs: 2_000 }),
      30_000,
      (err) => `CRI did not answer: ${(err as Error | undefined)?.message}; ${this.log()}`,
    );
  }

  log(): string {
    return readFileSync(join(this.dir, 'containerd.log'), 'utf8').slice(-2000);
  }

  private importImage(ref: string, cmd: string[]): string {
    const { tar, configDigest } = busyboxOciArchive(ref, cmd);
    const file = join(this.dir, 'image.tar');
    writeFileSync(file, tar);
    const r = spawnSync('ctr', ['--address', this.socket, '--namespace', 'k8s.io', 'images', 'import', '--no-unpack=false', file], { encoding: 'utf8', timeout: 120_000 });
    rmSync(file, { force: true });
    if (r.status !== 0) throw new Error(`ctr images import ${ref}: ${r.stderr}`);
    return configDigest;
  }

  /** RunPodSandbox with host network (no CNI) and the labels kubelet sets. */
  async runPod(name = `web-${randomBytes(3).toString('hex')}`, namespace = 'shop'): Promise<CriPod> {
    const uid = randomUUID();
    const config = {
      metadata: { name, uid, namespace, attempt: 0 },
      labels: { 'io.kubernetes.pod.name': name, 'io.kubernetes.pod.namespace': namespace, 'io.kubernetes.pod.uid': uid, app: name },
      annotations: { 'kubernetes.io/config.source': 'api' },
      linux: {
        cgroupParent: `/${this.cgroupTop}/kubepods/besteffort/pod${uid}`,
        securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } },
      },
    };
    const res = await this.cri.call<{ podSandboxId: string }>('RunPodSandbox', { config });
    const pod = { id: res.podSandboxId, name, namespace, uid, config };
    this.pods.push(pod);
    return pod;
  }

  /** CreateContainer + StartContainer running `sh -c script`, labelled and annotated as kubelet does. */
  async runContainer(pod: CriPod, script: string, name = `app-${randomBytes(3).toString('hex')}`): Promise<CriContainer> {
    const res = await this.cri.call<{ containerId: string }>('CreateContainer', {
      podSandboxId: pod.id,
      config: {
        metadata: { name, attempt: 0 },
        image: { image: CRI_TEST_IMAGE },
        command: ['sh', '-c', script],
        labels: {
          'io.kubernetes.container.name': name,
          'io.kubernetes.pod.name': pod.name,
          'io.kubernetes.pod.namespace': pod.namespace,
          'io.kubernetes.pod.uid': pod.uid,
        },
        annotations: {
          'io.kubernetes.container.hash': randomBytes(4).toString('hex'),
          'io.kubernetes.container.restartCount': '0',
          'io.kubernetes.container.terminationMessagePath': '/dev/termination-log',
          'io.kubernetes.pod.terminationGracePeriod': '30',
        },
        linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
      },
      sandboxConfig: pod.config,
    });
    await this.cri.call('StartContainer', { containerId: res.containerId });
    return { id: res.containerId, name, pod };
  }

  /** ExecSync, as `kubectl exec` without a terminal: `sh -c script` in the container. */
  async exec(c: CriContainer, script: string): Promise<number> {
    const r = await this.cri.call<{ exitCode?: number }>('ExecSync', { containerId: c.id, cmd: ['sh', '-c', script], timeout: 30 });
    return r.exitCode ?? 0;
  }

  /** Waits until the container has exited. */
  async waitExited(c: CriContainer, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.cri.call<{ status?: { state?: string } }>('ContainerStatus', { containerId: c.id });
      if (r.status?.state === 'CONTAINER_EXITED') return;
      if (Date.now() > deadline) throw new Error(`container ${c.id} did not exit`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  async removePod(pod: CriPod): Promise<void> {
    await this.cri.call('StopPodSandbox', { podSandboxId: pod.id }).catch(() => undefined);
    await this.cri.call('RemovePodSandbox', { podSandboxId: pod.id }).catch(() => undefined);
    this.pods = this.pods.filter((p) => p !== pod);
  }

  /** Removes every pod, stops containerd, and removes its mounts, cgroups and files. */
  async stop(): Promise<void> {
    for (const p of [...this.pods]) await this.removePod(p);
    this.cri.close();
    await stopDaemon(this.daemon);
    unmountUnder(this.dir);
    removeCgroupTree(this.cgroupTop);
    rmSync(this.dir, { recursive: true, force: true });
  }

  leftovers(): string[] {
    const out: string[] = [];
    if (existsSync(this.dir)) out.push(this.dir);
    out.push(...readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(this.dir)));
    for (const h of cgroupHierarchies()) if (existsSync(join(h, this.cgroupTop))) out.push(join(h, this.cgroupTop));
    return out;
  }
}
