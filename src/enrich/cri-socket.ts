// Where a CRI runtime listens. Apart from the client (cri-client.ts), so
// choosing a socket does not load gRPC's CRI protos on nodes without one.
import { existsSync } from 'node:fs';

export const DEFAULT_CRI_SOCKETS = [
  '/run/containerd/containerd.sock',
  '/run/crio/crio.sock',
  '/var/run/crio/crio.sock',
  '/run/k3s/containerd/containerd.sock',
];

export function findCriSocket(candidates = DEFAULT_CRI_SOCKETS): string | undefined {
  return candidates.find((p) => existsSync(p));
}
