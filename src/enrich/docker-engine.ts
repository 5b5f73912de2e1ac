// Container metadata from the Docker Engine API over its unix socket: name,
// image, image id, labels (compose's, and the io.kubernetes.* labels that
// cri-dockerd sets), and the overlay directories of its overlay2 storage,
// which outlive the container's processes until the container is removed.
import { request, type ClientRequest } from 'node:http';
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

  /**
   * Calls onStart with the id of every container the daemon starts (the
   * Engine's event stream), so its metadata can be fetched while it runs:
   * dockerd answers inspect only after its exit handling, which outlasts a
   * lookup's wait for a container that exits at once. Reconnects after a
   * second when the stream ends; the returned function stops it.
   */
  watchStarts(onStart: (id: string) => void): () => void {
    let stopped = false;
    let current: ClientRequest | undefined;
    const filters = encodeURIComponent(JSON.stringify({ type: ['container'], event: ['start'] }));
    const connect = (): void => {
      if (stopped) return;
      let buf = '';
      current = request({ socketPath: this.socketPath, method: 'GET', path: `/events?filters=${filters}`, headers: { Host: 'docker' } }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            try {
              const ev = JSON.parse(line) as { id?: string; Actor?: { ID?: string } };
              const id = ev.Actor?.ID ?? ev.id;
              if (id) onStart(id);
            } catch {
              /* not an event line */
            }
          }
        });
        res.on('end', retry);
        res.on('error', retry);
      });
      current.on('error', retry);
      current.end();
    };
    let timer: NodeJS.Timeout | undefined;
    function retry(): void {
      if (stopped || timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        connect();
      }, 1_000);
      timer.unref();
    }
    connect();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      current?.destroy();
    };
  }
}
