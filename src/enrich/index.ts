// Picks the metadata sources this node has: a CRI socket (containerd,
// CRI-O), the Docker Engine socket, podman's state, the OCI runtime's state.
import type { Logger } from '../log.js';
import { findCriSocket } from './cri-socket.js';
import { DockerEngine, findDockerSocket } from './docker-engine.js';
import { MetadataResolver, type MetadataSource, type ResolverOptions } from './metadata.js';
import { OciStateSource } from './oci-state.js';
import { PodmanStore } from './podman-store.js';

export interface DetectOptions extends ResolverOptions {
  criSocket?: string;
  dockerSocket?: string;
  podmanStorage?: string;
}

export async function detectMetadataResolver(log: Logger, opts: DetectOptions = {}): Promise<{ resolver: MetadataResolver; close(): void }> {
  const sources: MetadataSource[] = [];
  const closers: Array<() => void> = [];
  const socket = opts.criSocket ?? findCriSocket();
  if (socket) {
    // Loaded only where a CRI runtime listens: the client brings gRPC's CRI protos.
    const { CriClient } = await import('./cri-client.js');
    const cri = new CriClient(socket);
    sources.push(cri);
    closers.push(() => cri.close());
  }
  const dockerSocket = opts.dockerSocket ?? findDockerSocket();
  const docker = dockerSocket ? new DockerEngine(dockerSocket) : undefined;
  if (docker) sources.push(docker);
  const podman = new PodmanStore(opts.podmanStorage);
  if (await podman.available()) sources.push(podman);
  // Last: the OCI runtime's state has annotations even where no daemon answers.
  sources.push(new OciStateSource());
  const describe = (s: MetadataSource) => ('socketPath' in s && typeof s.socketPath === 'string' ? `${s.name} (${s.socketPath})` : s.name);
  log.info(`container metadata from: ${sources.map(describe).join(', ') || 'none (ids only)'}`);
  const resolver = new MetadataResolver(sources, opts);
  if (docker) closers.push(docker.watchStarts((id) => resolver.prefetch(id, 'docker')));
  const sweep = setInterval(() => void resolver.sweep(), 60_000);
  sweep.unref();
  return {
    resolver,
    close() {
      clearInterval(sweep);
      for (const c of closers) c();
    },
  };
}
