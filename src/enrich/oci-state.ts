// Container metadata from the OCI runtime's own state (runc/crun state.json),
// which carries the bundle's annotations. Works with no CRI socket at all:
// containerd and CRI-O write the pod and image into annotations.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerMetadata, KubernetesMetadata, MetadataSource } from './metadata.js';

export const DEFAULT_OCI_STATE_ROOTS = [
  '/run/runc',
  '/run/containerd/runc/k8s.io',
  '/run/containerd/runc/moby',
  '/run/crun',
];

interface RuncState {
  id?: string;
  config?: { labels?: string[] };
}

/** Annotation keys per runtime, first match wins. */
const KEYS = {
  podName: ['io.kubernetes.cri.sandbox-name', 'io.kubernetes.pod.name'],
  namespace: ['io.kubernetes.cri.sandbox-namespace', 'io.kubernetes.pod.namespace'],
  podUid: ['io.kubernetes.cri.sandbox-uid', 'io.kubernetes.pod.uid'],
  container: ['io.kubernetes.cri.container-name', 'io.kubernetes.container.name'],
  image: ['io.kubernetes.cri.image-name', 'io.kubernetes.cri-o.ImageName', 'org.opencontainers.image.ref.name'],
  imageId: ['io.kubernetes.cri-o.ImageRef'],
} as const;

export function metadataFromAnnotations(id: string, a: Record<string, string>): ContainerMetadata {
  const pick = (keys: readonly string[]) => keys.map((k) => a[k]).find((v) => v !== undefined && v !== '');
  const runtime: ContainerMetadata['runtime'] = a['io.container.manager'] === 'libpod'
    ? 'podman'
    : Object.keys(a).some((k) => k.startsWith('io.kubernetes.cri-o.'))
      ? 'cri-o'
      : Object.keys(a).some((k) => k.startsWith('io.kubernetes.cri.'))
        ? 'containerd'
        : 'unknown';
  const meta: ContainerMetadata = { id, runtime };
  const image = pick(KEYS.image);
  if (image) meta.image = image;
  const imageId = pick(KEYS.imageId);
  if (imageId) meta.imageId = imageId;
  const k8s: KubernetesMetadata = {};
  const pod = pick(KEYS.podName);
  if (pod) k8s.pod = pod;
  const ns = pick(KEYS.namespace);
  if (ns) k8s.namespace = ns;
  const uid = pick(KEYS.podUid);
  if (uid) k8s.podUid = uid;
  const container = pick(KEYS.container);
  if (container) {
    k8s.container = container;
    meta.name = container;
  }
  if (Object.keys(k8s).length) meta.kubernetes = k8s;
  return meta;
}

export class OciStateSource implements MetadataSource {
  readonly name = 'oci-state';
  constructor(private readonly roots = DEFAULT_OCI_STATE_ROOTS) {}

  private async state(id: string): Promise<RuncState | null> {
    for (const root of this.roots) {
      try {
        return JSON.parse(await readFile(join(root, id, 'state.json'), 'utf8')) as RuncState;
      } catch {
        /* not under this root */
      }
    }
    return null;
  }

  async lookup(id: string): Promise<ContainerMetadata | null> {
    const st = await this.state(id);
    if (!st) return null;
    const annotations: Record<string, string> = {};
    for (const label of st.config?.labels ?? []) {
      const eq = label.indexOf('=');
      if (eq > 0) annotations[label.slice(0, eq)] = label.slice(eq + 1);
    }
    delete annotations['bundle'];
    return metadataFromAnnotations(id, annotations);
  }

  async exists(id: string): Promise<boolean> {
    return (await this.state(id)) !== null;
  }
}
