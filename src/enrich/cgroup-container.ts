// Which container a cgroup belongs to, from the names the kernel captured at
// exec time (the cgroup's leaf name and its parent's), so a process that has
// already exited still resolves. Covers the runtimes and cgroup drivers in
// use: systemd driver (`<runtime>-<id>.scope` under `kubepods-...-pod<uid>.slice`)
// and cgroupfs driver (`/kubepods/<qos>/pod<uid>/<id>`, `/docker/<id>`,
// `/k8s.io/<id>`, `/libpod_parent/libpod-<id>`).

export type Runtime = 'podman' | 'docker' | 'containerd' | 'cri-o' | 'unknown';

export interface CgroupContainer {
  id: string;
  runtime: Runtime;
  /** Kubernetes pod uid when the parent cgroup names a pod. */
  podUid?: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

const SCOPE_PREFIXES: Array<[RegExp, Runtime]> = [
  [/^libpod-([0-9a-f]{64})(?:\.scope)?$/, 'podman'],
  [/^docker-([0-9a-f]{64})\.scope$/, 'docker'],
  [/^cri-containerd-([0-9a-f]{64})\.scope$/, 'containerd'],
  [/^crio-([0-9a-f]{64})\.scope$/, 'cri-o'],
];

/** Runtime helpers that live in container-like cgroups but are not containers. */
const NOT_CONTAINERS = [/^crio-conmon-/, /^libpod-conmon-/, /^conmon$/];

const PARENT_RUNTIME: Array<[RegExp, Runtime]> = [
  [/^docker$/, 'docker'],
  [/^k8s\.io$/, 'containerd'],
  [/^libpod_parent$/, 'podman'],
  [/^machine\.slice$/, 'podman'],
];

/** pod<uid> (cgroupfs) or kubepods-<qos>-pod<uid_with_underscores>.slice (systemd). */
function podUidFrom(parent: string): string | undefined {
  const cgroupfs = /^pod([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/.exec(parent);
  if (cgroupfs) return cgroupfs[1];
  const systemd = /^kubepods(?:-[a-z]+)?-pod([0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})\.slice$/.exec(parent);
  if (systemd) return systemd[1]!.replaceAll('_', '-');
  return undefined;
}

export function containerFromCgroup(leaf: string, parent = ''): CgroupContainer | null {
  if (!leaf || NOT_CONTAINERS.some((re) => re.test(leaf))) return null;
  const podUid = podUidFrom(parent);
  for (const [re, runtime] of SCOPE_PREFIXES) {
    const m = re.exec(leaf);
    if (m) return withPod({ id: m[1]!, runtime }, podUid);
  }
  if (HEX64.test(leaf)) {
    const runtime = PARENT_RUNTIME.find(([re]) => re.test(parent))?.[1] ?? 'unknown';
    return withPod({ id: leaf, runtime }, podUid);
  }
  return null;
}

function withPod(c: CgroupContainer, podUid: string | undefined): CgroupContainer {
  return podUid ? { ...c, podUid } : c;
}
