// Container metadata from the Docker Engine API over its unix socket: name,
// image, image id, labels (compose's, and the io.kubernetes.* labels that
// cri-dockerd sets), and the overlay directories of its overlay2 storage,
// which outlive the container's processes until the container is removed.
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import type { ContainerMetadata, KubernetesMetadata, MetadataSource } from './metadata.js';

export const DEFAULT_DOCKER_SOCKETS = ['/var/run/docker.sock', '/run/docker.sock'];

export function findDockerSocket(candidates = DEFAULT_DOCKER_SOCKETS): string | undefined {
  return candidates.find((p) => existsSync(p));
}

export class DockerApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'DockerApiError';
  }
}

export interface DockerRequestOptions {
  body?: Buffer | object;
  timeoutMs?: number;
  contentType?: string;
}

/** One Docker Engine API call; resolves with the status and body, rejects on transport errors. */
export function dockerRequest(socketPath: string, method: string, path: string, opts: DockerRequestOptions = {}): Promise<{ status: number; body: Buffer }> {
  const payload = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(JSON.stringify(opts.body));
  const headers: Record<string, string | number> = { Host: 'docker' };
  if (payload) {
    headers['Content-Type'] = opts.contentType ?? (Buffer.isBuffer(opts.body) ? 'application/octet-stream' : 'application/json');
    headers['Content-Length'] = payload.length;
  }
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers, timeout: opts.timeoutMs ?? 2_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`docker ${method} ${path}: no answer in ${opts.timeoutMs ?? 2_000} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** The parts of GET /containers/{id}/json that driftwatch reads. */
export interface DockerInspect {
  Id?: string;
  Name?: string;
  Image?: string;
  Config?: { Image?: string; Labels?: Record<string, string> | null };
  State?: { Pid?: number; Running?: boolean };
  GraphDriver?: { Name?: string; Data?: Record<string, string> | null };
}

export function metadataFromInspect(id: string, j: DockerInspect): ContainerMetadata {
  const labels = j.Config?.Labels ?? {};
  const meta: ContainerMetadata = { id, runtime: 'docker' };
  const name = j.Name?.replace(/^\//, '');
  if (name) meta.name = name;
  if (j.Config?.Image) meta.image = j.Config.Image;
  if (j.Image) meta.imageId = j.Image;
  if (Object.keys(labels).length) meta.labels = labels;
  const k8s: KubernetesMetadata = {};
  if (labels['io.kubernetes.pod.namespace']) k8s.namespace = labels['io.kubernetes.pod.namespace'];
  if (labels['io.kubernetes.pod.name']) k8s.pod = labels['io.kubernetes.pod.name'];
  if (labels['io.kubernetes.pod.uid']) k8s.podUid = labels['io.kubernetes.pod.uid'];
  if (labels['io.kubernetes.container.name']) k8s.container = labels['io.kubernetes.container.name'];
  if (Object.keys(k8s).length) meta.kubernetes = k8s;
  const data = j.GraphDriver?.Data ?? {};
  if (j.GraphDriver?.Name?.startsWith('overlay') && data['UpperDir']) {
    meta.rootfs = { upper: data['UpperDir'], lowers: (data['LowerDir'] ?? '').split(':').filter(Boolean) };
  }
  return meta;
}

export class DockerEngine implements MetadataSource {
  readonly name = 'docker';

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 2_000,
  ) {}

  private async inspect(id: string): Promise<DockerInspect | null> {
    const res = await dockerRequest(this.socketPath, 'GET', `/containers/${encodeURIComponent(id)}/json`, { timeoutMs: this.timeoutMs });
    if (res.status === 404) return null;
    if (res.status !== 200) throw new DockerApiError(res.status, `docker inspect ${id}: HTTP ${res.status} ${res.body.toString('utf8', 0, 200)}`);
    return JSON.parse(res.body.toString('utf8')) as DockerInspect;
  }

  async lookup(id: string): Promise<ContainerMetadata | null> {
    const j = await this.inspect(id);
    return j ? metadataFromInspect(id, j) : null;
  }

  async exists(id: string): Promise<boolean> {
    return (await this.inspect(id)) !== null;
  }
}
