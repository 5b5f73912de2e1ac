// Host or container? A process is in a container when its cgroup names a
// container, or when it has both its own mount namespace and its own pid
// namespace. A private mount namespace alone is not enough: systemd gives
// PrivateTmp= services one, and they are host services.
import { readlinkSync } from 'node:fs';
import { containerFromCgroup, type CgroupContainer, type Runtime } from '../enrich/cgroup-container.js';
import type { KubernetesMetadata } from '../enrich/metadata.js';
import type { ProcessFileRecord } from './decode.js';

export interface HostNamespaces {
  mnt: number;
  pid: number;
}

export interface ContainerInfo {
  inContainer: boolean;
  id: string | null;
  runtime?: Runtime;
  podUid?: string;
  name?: string;
  image?: string;
  imageId?: string;
  labels?: Record<string, string>;
  kubernetes?: KubernetesMetadata;
}

function nsInode(path: string): number {
  const m = /\[(\d+)\]/.exec(readlinkSync(path));
  if (!m) throw new Error(`cannot read namespace ${path}`);
  return Number(m[1]);
}

/**
 * The host's namespaces: those of PID 1 (a DaemonSet runs the sensor with the
 * host pid namespace). Where PID 1 cannot be inspected (a sandbox that denies
 * it), the sensor's own namespaces stand in, which is right when the sensor
 * runs on the host; `source` says which was used.
 */
export function readHostNamespaces(procRoot = '/proc'): HostNamespaces & { source: 'pid1' | 'self' } {
  try {
    return { mnt: nsInode(`${procRoot}/1/ns/mnt`), pid: nsInode(`${procRoot}/1/ns/pid`), source: 'pid1' };
  } catch {
    return { mnt: nsInode(`${procRoot}/self/ns/mnt`), pid: nsInode(`${procRoot}/self/ns/pid`), source: 'self' };
  }
}

/**
 * Cgroup id → what its names say; ids are unique per cgroup, so the names
 * need decoding once. Asked for every event: a plain Map, emptied when it
 * reaches its bound (the live cgroups of a node refill it at once).
 */
const byCgroup = new Map<number, CgroupContainer | false>();
const BY_CGROUP_MAX = 4096;

export function containerOf(
  exec: Pick<ProcessFileRecord, 'cgroup' | 'cgroupParent' | 'mntNs' | 'pidNs'> & { cgroupKey?: number },
  host: HostNamespaces,
): ContainerInfo {
  let fromCgroup: CgroupContainer | null;
  const key = exec.cgroupKey;
  const cached = key !== undefined && key > 1 ? byCgroup.get(key) : undefined;
  if (cached !== undefined) fromCgroup = cached || null;
  else {
    fromCgroup = containerFromCgroup(exec.cgroup, exec.cgroupParent);
    if (key !== undefined && key > 1) {
      if (byCgroup.size >= BY_CGROUP_MAX) byCgroup.clear();
      byCgroup.set(key, fromCgroup ?? false);
    }
  }
  if (fromCgroup) {
    const info: ContainerInfo = { inContainer: true, id: fromCgroup.id, runtime: fromCgroup.runtime };
    if (fromCgroup.podUid) info.podUid = fromCgroup.podUid;
    return info;
  }
  const isolated = exec.mntNs !== host.mnt && exec.pidNs !== host.pid;
  return { inContainer: isolated, id: null };
}
