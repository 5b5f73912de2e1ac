// Container metadata from the CRI runtime (containerd, CRI-O) over its unix
// socket, using the CRI's own protobuf (proto/cri) through grpc-js. On
// containerd the verbose status names the container's snapshot, and
// containerd's snapshots service (same socket) gives its overlay mounts:
// the upper directory that outlives the container's processes.
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { overlayDirsFromOptions } from './container-storage.js';
import type { ContainerMetadata } from './metadata.js';

export { DEFAULT_CRI_SOCKETS, findCriSocket } from './cri-socket.js';

const protoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'proto');
const protoPath = join(protoRoot, 'cri', 'runtime_v1_subset.proto');
const snapshotsProtoPath = join(protoRoot, 'containerd', 'snapshots_v1_subset.proto');

let root: protobuf.Root | undefined;
function criRoot(): protobuf.Root {
  root ??= protobuf.loadSync([protoPath, snapshotsProtoPath]);
  return root;
}

interface CriStatus {
  id?: string;
  metadata?: { name?: string };
  state?: string;
  image?: { image?: string };
  imageRef?: string;
  imageId?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** containerd's verbose ContainerStatus info (the "info" key, JSON). */
interface ContainerdInfo {
  pid?: number;
  snapshotKey?: string;
  snapshotter?: string;
}

function methodDef(service: string, name: string, reqType: string, resType: string): grpc.MethodDefinition<object, Record<string, unknown>> {
  const r = criRoot();
  const Req = r.lookupType(reqType);
  const Res = r.lookupType(resType);
  return {
    path: `/${service}/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (v: object) => Buffer.from(Req.encode(Req.fromObject(v)).finish()),
    requestDeserialize: (b: Buffer) => Req.toObject(Req.decode(b)),
    responseSerialize: (v: object) => Buffer.from(Res.encode(Res.fromObject(v)).finish()),
    responseDeserialize: (b: Buffer) => Res.toObject(Res.decode(b), { longs: String, enums: String, bytes: Buffer, defaults: false }),
  };
}

const CRI_SERVICE = 'runtime.v1.RuntimeService';

export class CriClient {
  readonly name = 'cri';
  private client: grpc.Client;
  private methods = new Map<string, grpc.MethodDefinition<object, Record<string, unknown>>>();

  constructor(
    readonly socketPath: string,
    private readonly deadlineMs = 2_000,
    /** containerd's namespace of CRI containers. */
    private readonly containerdNamespace = 'k8s.io',
  ) {
    this.client = new grpc.Client(`unix://${socketPath}`, grpc.credentials.createInsecure());
  }

  /** One unary CRI call, e.g. call('RunPodSandbox', {...}); request and answer in protobufjs object form. */
  call<T = Record<string, unknown>>(method: string, req: object, opts: { deadlineMs?: number; service?: string; metadata?: Record<string, string> } = {}): Promise<T> {
    const service = opts.service ?? CRI_SERVICE;
    const key = `${service}/${method}`;
    let def = this.methods.get(key);
    if (!def) {
      const pkg = service.slice(0, service.lastIndexOf('.'));
      def = methodDef(service, method, `${pkg}.${method}Request`, `${pkg}.${method}Response`);
      this.methods.set(key, def);
    }
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
    return new Promise((resolvePromise, reject) => {
      this.client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, md, { deadline: Date.now() + (opts.deadlineMs ?? this.deadlineMs) }, (err, res) =>
        err ? reject(err) : resolvePromise(res as T),
      );
    });
  }

  /** null when the runtime does not know the id (NOT_FOUND). */
  async status(id: string): Promise<ContainerMetadata | null> {
    const containerd = this.runtimeName() === 'containerd';
    let res: { status?: CriStatus; info?: Record<string, string> };
    try {
      res = await this.call('ContainerStatus', { containerId: id, verbose: containerd });
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return null;
      throw err;
    }
    if (!res.status) return null;
    const meta = fromCri(id, res.status, this.runtimeName());
    if (containerd && res.info?.['info']) {
      const rootfs = await this.snapshotDirs(res.info['info']).catch(() => undefined);
      if (rootfs) meta.rootfs = rootfs;
    }
    return meta;
  }

  /** The overlay dirs of the container's snapshot, from containerd's snapshots service. */
  private async snapshotDirs(infoJson: string): Promise<ContainerMetadata['rootfs']> {
    const info = JSON.parse(infoJson) as ContainerdInfo;
    if (!info.snapshotKey || !info.snapshotter) return undefined;
    const res = await this.call<{ mounts?: Array<{ type?: string; options?: string[] }> }>(
      'Mounts',
      { snapshotter: info.snapshotter, key: info.snapshotKey },
      { service: 'containerd.services.snapshots.v1.Snapshots', metadata: { 'containerd-namespace': this.containerdNamespace } },
    );
    const overlay = res.mounts?.find((m) => m.type === 'overlay');
    return overlay ? overlayDirsFromOptions(overlay.options ?? []) : undefined;
  }

  lookup(id: string): Promise<ContainerMetadata | null> {
    return this.status(id);
  }

  private runtimeName(): ContainerMetadata['runtime'] {
    return this.socketPath.includes('crio') ? 'cri-o' : 'containerd';
  }

  close(): void {
    this.client.close();
  }
}

function fromCri(id: string, s: CriStatus, runtime: ContainerMetadata['runtime']): ContainerMetadata {
  const labels = s.labels ?? {};
  const k8s = labels['io.kubernetes.pod.name']
    ? {
        namespace: labels['io.kubernetes.pod.namespace'],
        pod: labels['io.kubernetes.pod.name'],
        podUid: labels['io.kubernetes.pod.uid'],
        container: labels['io.kubernetes.container.name'],
      }
    : undefined;
  return {
    id,
    runtime,
    name: s.metadata?.name,
    image: s.image?.image,
    imageId: s.imageRef || s.imageId,
    labels,
    kubernetes: k8s,
  };
}

/** For tests and the kernel-free path: the service definition for a server. */
export function criServiceDefinition(): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const name of ['ContainerStatus', 'ListContainers']) {
    def[name] = methodDef(CRI_SERVICE, name, `runtime.v1.${name}Request`, `runtime.v1.${name}Response`) as grpc.MethodDefinition<object, object>;
  }
  return def as grpc.ServiceDefinition;
}

export const criProtoDir = join(dirname(protoPath));
