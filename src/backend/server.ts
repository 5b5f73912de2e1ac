// The reference backend: a grpc-js server for driftwatch.v1.FindingService
// and grpc.health.v1.Health. The event loop decides who gets in before a
// body is buffered: the token is checked from the metadata before the body is read,
// requests in flight, their bytes and the findings waiting to be stored are
// capped (RESOURCE_EXHAUSTED, which sensors retry), and connections that say
// nothing, idle or live too long are closed. The store's writes run in the
// ingest worker thread (ingest-pool.ts says where decoding runs).
import * as grpc from '@grpc/grpc-js';
import { timingSafeEqual, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { driftwatch, grpc as grpcHealth } from '#gen/finding.js';
import type { FindingJson } from '#gen/finding-json.js';
import { InlineIngest, IngestWorker, type Ingester } from './ingest-pool.js';
import { openStore } from './open-store.js';
import type { FindingStore } from './store.js';
import { checkFinding, describeRejections, splitRequest } from './validate.js';

export interface TlsFiles {
  cert: string;
  key: string;
  /** CA for client certificates: set it to require mTLS. */
  clientCa?: string;
}

export interface BackendLimits {
  maxFindingsPerRequest: number;
  maxMessageBytes: number;
  /** Export calls admitted at once; more get RESOURCE_EXHAUSTED before their body is read. */
  maxInFlight: number;
  /** Bytes of admitted request bodies held at once. */
  maxInFlightBytes: number;
  /** Findings handed to the store and not yet written. */
  maxQueuedRows: number;
  maxConnections: number;
  /** A connection that has not sent the HTTP/2 preface (or a TLS hello) by then is closed. */
  handshakeTimeoutMs: number;
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  /** A connection with no call for this long is closed (GOAWAY). */
  maxConnectionIdleMs: number;
  /** Connections are closed after this age (with a grace for calls in progress), so sensors spread over replicas. */
  maxConnectionAgeMs: number;
  maxConnectionAgeGraceMs: number;
}

export const DEFAULT_LIMITS: BackendLimits = {
  maxFindingsPerRequest: 10_000,
  maxMessageBytes: 16 << 20,
  maxInFlight: 32,
  maxInFlightBytes: 96 << 20,
  maxQueuedRows: 64 << 10,
  maxConnections: 4096,
  handshakeTimeoutMs: 15_000,
  keepaliveTimeMs: 60_000,
  keepaliveTimeoutMs: 20_000,
  maxConnectionIdleMs: 5 * 60_000,
  maxConnectionAgeMs: 30 * 60_000,
  maxConnectionAgeGraceMs: 30_000,
};

export interface BackendOptions {
  listen: string;
  db: string;
  token?: string;
  tls?: TlsFiles;
  limits?: Partial<BackendLimits>;
  /** PostgreSQL connections of the ingest worker. */
  poolSize?: number;
  /** Store on the event loop instead of a worker thread (the sensor's embedded backend). */
  inline?: boolean;
  /** Delay between commit and answer: a chaos knob for tests of lost acks. */
  ackDelayMs?: number;
  log?: (msg: string) => void;
}

/** Counters of everything the backend refused or dropped. */
export interface BackendMetrics {
  requests: number;
  stored: number;
  duplicates: number;
  rejectedFindings: number;
  truncatedFindings: number;
  unauthenticated: number;
  resourceExhausted: number;
  storeUnavailable: number;
  connectionsRefused: number;
  connectionsTimedOut: number;
}

export interface Backend {
  address: string;
  port: number;
  /** A reading handle on the store (the writes go through the ingest worker). */
  store: FindingStore;
  metrics: BackendMetrics;
  /** Open connections right now. */
  connections(): number;
  /** Stops within graceMs + about a second, whatever the clients do. */
  stop(graceMs?: number): Promise<void>;
}

const { ExportResponse } = driftwatch.v1;
const EXPORT_PATH = '/driftwatch.v1.FindingService/Export';

/** Why a finding cannot be stored, or null (the per-finding check the backend applies). */
export function invalidReason(f: FindingJson): string | null {
  const c = checkFinding(structuredClone(f), 0);
  return c.ok ? null : describeRejections([c.rejection]);
}

const raw = (b: Buffer) => b;

function exportService(): grpc.ServiceDefinition {
  return {
    Export: {
      path: EXPORT_PATH,
      requestStream: false,
      responseStream: false,
      // decoded per finding in the worker, so a bad finding is rejected alone
      requestSerialize: raw,
      requestDeserialize: raw,
      responseSerialize: (r: object) => Buffer.from(ExportResponse.encode(ExportResponse.fromObject(r)).finish()),
      responseDeserialize: (b: Buffer) => ExportResponse.toObject(ExportResponse.decode(b)),
    },
  } as grpc.ServiceDefinition;
}

function healthService(): grpc.ServiceDefinition {
  const { HealthCheckRequest, HealthCheckResponse } = grpcHealth.health.v1;
  return {
    Check: {
      path: '/grpc.health.v1.Health/Check',
      requestStream: false,
      responseStream: false,
      requestSerialize: (r: object) => Buffer.from(HealthCheckRequest.encode(HealthCheckRequest.fromObject(r)).finish()),
      requestDeserialize: (b: Buffer) => HealthCheckRequest.toObject(HealthCheckRequest.decode(b)),
      responseSerialize: (r: object) => Buffer.from(HealthCheckResponse.encode(HealthCheckResponse.fromObject(r)).finish()),
      responseDeserialize: (b: Buffer) => HealthCheckResponse.toObject(HealthCheckResponse.decode(b), { enums: String }),
    },
  } as grpc.ServiceDefinition;
}

function credentials(tls: TlsFiles | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const ca = tls.clientCa ? readFileSync(tls.clientCa) : null;
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: readFileSync(tls.cert), private_key: readFileSync(tls.key) }], !!ca);
}

/** `Authorization: Bearer <token>`, the scheme case-insensitive (RFC 6750), compared in constant time. */
export function bearerMatches(header: unknown, token: string): boolean {
  if (typeof header !== 'string') return false;
  const m = /^bearer +(\S+) *$/i.exec(header);
  if (!m) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1]!), digest(token));
}

function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen);
  if (!m) throw new Error(`--listen wants host:port (got ${listen})`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}

export async function startBackend(opts: BackendOptions): Promise<Backend> {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const log = opts.log ?? (() => {});
  const metrics: BackendMetrics = {
    requests: 0, stored: 0, duplicates: 0, rejectedFindings: 0, truncatedFindings: 0, unauthenticated: 0,
    resourceExhausted: 0, storeUnavailable: 0, connectionsRefused: 0, connectionsTimedOut: 0,
  };
  // PostgreSQL: two connections, so one batch is written while the next is
  // decoded (one thread decodes); each one more keeps a decoded batch in the
  // worker's memory (about 20 MiB of RSS at 16 sensors) for no more findings/s.
  const ingestConfig = { db: opts.db, poolSize: opts.poolSize ?? 2, maxFindingsPerRequest: limits.maxFindingsPerRequest };
  const worker: Ingester = opts.inline ? await InlineIngest.start(ingestConfig) : await IngestWorker.start(ingestConfig);
  let store: FindingStore;
  try {
    store = await openStore(opts.db, { readOnly: true, poolSize: 2 });
  } catch (err) {
    await worker.close(0);
    throw err;
  }

  let stopping = false;
  let inFlight = 0;
  let inFlightBytes = 0;
  const status = (code: grpc.status, details: string) => ({ code, details, metadata: new grpc.Metadata() });

  const admission: grpc.ServerInterceptor = (method, call) => {
    if (method.path !== EXPORT_PATH) return new grpc.ServerInterceptingCall(call);
    let admitted = false;
    let bytes = 0;
    const release = () => {
      if (!admitted) return;
      admitted = false;
      inFlight--;
      inFlightBytes -= bytes;
    };
    const refuse = (code: grpc.status, details: string) => {
      release();
      if (code === grpc.status.RESOURCE_EXHAUSTED) metrics.resourceExhausted++;
      call.sendStatus(status(code, details));
    };
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(md, nextMd) {
            if (opts.token && !bearerMatches(md.get('authorization')[0], opts.token)) {
              metrics.unauthenticated++;
              return refuse(grpc.status.UNAUTHENTICATED, 'missing or wrong bearer token');
            }
            if (stopping) return refuse(grpc.status.UNAVAILABLE, 'backend is stopping');
            if (inFlight >= limits.maxInFlight) return refuse(grpc.status.RESOURCE_EXHAUSTED, `${inFlight} exports in progress; retry later`);
            if (worker.queuedRows >= limits.maxQueuedRows) return refuse(grpc.status.RESOURCE_EXHAUSTED, `${worker.queuedRows} findings waiting for the store; retry later`);
            admitted = true;
            inFlight++;
            nextMd(md);
          },
          onReceiveMessage(msg: Buffer, nextMsg) {
            bytes = msg.length;
            inFlightBytes += bytes;
            if (inFlightBytes > limits.maxInFlightBytes) return refuse(grpc.status.RESOURCE_EXHAUSTED, 'too many request bytes in progress; retry later');
            nextMsg(msg);
          },
          onCancel() {
            release();
          },
        });
      },
      sendStatus(s, next) {
        release();
        next(s);
      },
    });
  };

  const server = new grpc.Server({
    'grpc.max_receive_message_length': limits.maxMessageBytes,
    'grpc.max_send_message_length': 1 << 20,
    'grpc.keepalive_time_ms': limits.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': limits.keepaliveTimeoutMs,
    'grpc.max_connection_idle_ms': limits.maxConnectionIdleMs,
    'grpc.max_connection_age_ms': limits.maxConnectionAgeMs,
    'grpc.max_connection_age_grace_ms': limits.maxConnectionAgeGraceMs,
    // sensors send one batch at a time; a slow ping rate from them is fine
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    interceptors: [admission],
  });

  server.addService(exportService(), {
    Export: (call: grpc.ServerUnaryCall<Buffer, object>, cb: grpc.sendUnaryData<object>) => {
      metrics.requests++;
      const fail = (code: grpc.status, details: string) => cb({ code, details, name: '', message: details });
      let rows: number;
      try {
        rows = splitRequest(call.request).length;
      } catch (err) {
        return fail(grpc.status.INVALID_ARGUMENT, `malformed ExportRequest: ${(err as Error).message}`);
      }
      worker.submit(call.request, rows).then((o) => {
        if (o.kind === 'invalid') {
          metrics.rejectedFindings += rows;
          return fail(grpc.status.INVALID_ARGUMENT, o.message);
        }
        if (o.kind === 'unavailable') {
          metrics.storeUnavailable++;
          log(o.message);
          return fail(grpc.status.UNAVAILABLE, o.message);
        }
        metrics.stored += o.stored;
        metrics.duplicates += o.duplicates;
        metrics.rejectedFindings += o.rejected.length;
        metrics.truncatedFindings += o.truncated;
        const answer = () =>
          cb(null, {
            stored: o.stored,
            duplicates: o.duplicates,
            partialSuccess: o.rejected.length ? { rejectedFindings: o.rejected.length, errorMessage: describeRejections(o.rejected) } : undefined,
          });
        if (opts.ackDelayMs) setTimeout(answer, opts.ackDelayMs);
        else answer();
      });
    },
  });
  server.addService(healthService(), {
    Check: (_call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) =>
      cb(null, { status: stopping ? 'NOT_SERVING' : 'SERVING' }),
  });

  // Our own listener in front of gRPC: it caps connections and closes those
  // that never start HTTP/2 (grpc-js only watches sessions once they exist).
  const injector = server.createConnectionInjector(credentials(opts.tls));
  const sockets = new Set<Socket>();
  const net: NetServer = createServer({ noDelay: true }, (socket) => {
    if (stopping || sockets.size >= limits.maxConnections) {
      metrics.connectionsRefused++;
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const timer = setTimeout(() => {
      // 24 bytes: the HTTP/2 client preface (a TLS ClientHello is longer)
      if (socket.bytesRead < 24) {
        metrics.connectionsTimedOut++;
        socket.destroy();
      }
    }, limits.handshakeTimeoutMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    injector.injectConnection(socket);
  });
  const { host, port: wantPort } = parseListen(opts.listen);
  try {
    await new Promise<void>((resolve, reject) => {
      net.once('error', reject);
      net.listen({ host, port: wantPort, backlog: 4096 }, () => (net.off('error', reject), resolve()));
    });
  } catch (err) {
    await worker.close(0);
    await store.close();
    throw err;
  }
  const port = (net.address() as { port: number }).port;

  return {
    address: `${host}:${port}`,
    port,
    store,
    metrics,
    connections: () => sockets.size,
    async stop(graceMs = 3000) {
      if (stopping) return;
      stopping = true;
      net.close();
      // finish calls in progress, then cut whatever is left
      const shutdown = new Promise<void>((res) => server.tryShutdown(() => res()));
      injector.drain(graceMs);
      const timedOut = await Promise.race([shutdown.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), graceMs).unref())]);
      if (timedOut) server.forceShutdown();
      injector.destroy();
      for (const s of sockets) s.destroy();
      await worker.close(timedOut ? 200 : 1000);
      await store.close().catch(() => {});
    },
  };
}
