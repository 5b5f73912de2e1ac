// Container metadata from the CRI runtime (containerd, CRI-O) over its unix
// socket, using the CRI's own protobuf (proto/cri) through grpc-js.
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ContainerMetadata } from './metadata.js';

export const DEFAULT_CRI_SOCKETS = [
  '/run/containerd/containerd.sock',
  '/run/crio/crio.sock',
  '/var/run/crio/crio.sock',
  '/run/k3s/containerd/containerd.sock',
];

const protoPath = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'proto', 'cri', 'runtime_v1_subset.proto');

let root: protobuf.Root | undefined;
function criRoot(): protobuf.Root {
  root ??= protobuf.loadSync(protoPath);
  return root;
}

interface CriStatus {
  id?: string;
  metadata?: { name?: string };
  image?: { image?: string };
  imageRef?: string;
  imageId?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function findCriSocket(candidates = DEFAULT_CRI_SOCKETS): string | undefined {
  return candidates.find((p) => existsSync(p));
}

export class CriClient {
  readonly name = 'cri';
  private client: grpc.Client;
  private statusMethod: grpc.MethodDefinition<object, { status?: CriStatus }>;

  constructor(
    readonly socketPath: string,
    private readonly deadlineMs = 2_000,
  ) {
    const r = criRoot();
    const Req = r.lookupType('runtime.v1.ContainerStatusRequest');
    const Res = r.lookupType('runtime.v1.ContainerStatusResponse');
    this.statusMethod = {
      path: '/runtime.v1.RuntimeService/ContainerStatus',
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: object) => Buffer.from(Req.encode(Req.fromObject(v)).finish()),
      requestDeserialize: (b: Buffer) => Req.toObject(Req.decode(b)),
      responseSerialize: (v: object) => Buffer.from(Res.encode(Res.fromObject(v)).finish()),
      responseDeserialize: (b: Buffer) => Res.toObject(Res.decode(b), { longs: String, defaults: false }) as { status?: CriStatus },
    };
    this.client = new grpc.Client(`unix://${socketPath}`, grpc.credentials.createInsecure());
  }

  /** null when the runtime does not know the id (NOT_FOUND). */
  status(id: string): Promise<ContainerMetadata | null> {
    return new Promise((resolvePromise, reject) => {
      this.client.makeUnaryRequest(
        this.statusMethod.path,
        this.statusMethod.requestSerialize,
        this.statusMethod.responseDeserialize,
        { containerId: id, verbose: false },
        new grpc.Metadata(),
        { deadline: Date.now() + this.deadlineMs },
        (err, res) => {
          if (err) return err.code === grpc.status.NOT_FOUND ? resolvePromise(null) : reject(err);
          resolvePromise(res?.status ? fromCri(id, res.status, this.runtimeName()) : null);
        },
      );
    });
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
  const r = criRoot();
  const def: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const [name, reqT, resT] of [
    ['ContainerStatus', 'ContainerStatusRequest', 'ContainerStatusResponse'],
    ['ListContainers', 'ListContainersRequest', 'ListContainersResponse'],
  ] as const) {
    const Req = r.lookupType(`runtime.v1.${reqT}`);
    const Res = r.lookupType(`runtime.v1.${resT}`);
    def[name] = {
      path: `/runtime.v1.RuntimeService/${name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: object) => Buffer.from(Req.encode(Req.fromObject(v)).finish()),
      requestDeserialize: (b: Buffer) => Req.toObject(Req.decode(b)),
      responseSerialize: (v: object) => Buffer.from(Res.encode(Res.fromObject(v)).finish()),
      responseDeserialize: (b: Buffer) => Res.toObject(Res.decode(b)),
    };
  }
  return def as grpc.ServiceDefinition;
}

export const criProtoDir = join(dirname(protoPath));
