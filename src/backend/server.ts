// The reference backend: a grpc-js server for driftwatch.v1.FindingService
// and grpc.health.v1.Health. It authenticates (bearer token and/or mTLS),
// validates (size, required fields), dedupes by finding id and stores.
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { driftwatch, grpc as grpcHealth } from '#gen/finding.js';
import type { FindingJson } from '#gen/finding-json.js';
import { openStore, type FindingStore } from './store.js';

export interface TlsFiles {
  cert: string;
  key: string;
  /** CA for client certificates: set it to require mTLS. */
  clientCa?: string;
}

export interface BackendOptions {
  listen: string;
  db: string;
  token?: string;
  tls?: TlsFiles;
  maxFindingsPerRequest?: number;
  maxMessageBytes?: number;
  /** Delay between commit and answer: a chaos knob for tests of lost acks. */
  ackDelayMs?: number;
  log?: (msg: string) => void;
}

export interface Backend {
  address: string;
  port: number;
  store: FindingStore;
  stop(): Promise<void>;
}

const { Finding, ExportRequest, ExportResponse } = driftwatch.v1;
const TO_JSON = { longs: String, enums: String, arrays: true } as const;

/** Why a finding cannot be stored, or null. */
export function invalidReason(f: FindingJson): string | null {
  if (!f.id) return 'missing id';
  if (!f.time || Number.isNaN(Date.parse(f.time))) return `finding ${f.id}: missing or bad time`;
  if (!f.signature?.id) return `finding ${f.id}: missing signature.id`;
  if (!f.signature.severity || f.signature.severity === 'SEVERITY_UNSPECIFIED') return `finding ${f.id}: missing signature.severity`;
  if (!f.process) return `finding ${f.id}: missing process`;
  if (!f.host?.hostname) return `finding ${f.id}: missing host.hostname`;
  return null;
}

const raw = (b: Buffer) => b;

function exportService(): grpc.ServiceDefinition {
  return {
    Export: {
      path: '/driftwatch.v1.FindingService/Export',
      requestStream: false,
      responseStream: false,
      // decoded in the handler, so a malformed message gets INVALID_ARGUMENT
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

export async function startBackend(opts: BackendOptions): Promise<Backend> {
  const store = await openStore(opts.db);
  const maxFindings = opts.maxFindingsPerRequest ?? 10_000;
  const maxBytes = opts.maxMessageBytes ?? 16 << 20;
  const log = opts.log ?? (() => {});
  const server = new grpc.Server({
    'grpc.max_receive_message_length': maxBytes,
    'grpc.max_send_message_length': 1 << 20,
  });

  const fail = (cb: grpc.sendUnaryData<object>, code: grpc.status, details: string) => cb({ code, details, name: '', message: details });

  server.addService(exportService(), {
    Export: (call: grpc.ServerUnaryCall<Buffer, object>, cb: grpc.sendUnaryData<object>) => {
      if (opts.token) {
        const auth = call.metadata.get('authorization')[0];
        if (auth !== `Bearer ${opts.token}`) return fail(cb, grpc.status.UNAUTHENTICATED, 'missing or wrong bearer token');
      }
      let findings: FindingJson[];
      try {
        const req = ExportRequest.decode(call.request);
        findings = req.findings.map((f) => Finding.toObject(f as driftwatch.v1.Finding, TO_JSON) as FindingJson);
      } catch (err) {
        return fail(cb, grpc.status.INVALID_ARGUMENT, `malformed ExportRequest: ${(err as Error).message}`);
      }
      if (findings.length === 0) return fail(cb, grpc.status.INVALID_ARGUMENT, 'no findings in request');
      if (findings.length > maxFindings) return fail(cb, grpc.status.INVALID_ARGUMENT, `more than ${maxFindings} findings in one request`);
      const valid: FindingJson[] = [];
      const reasons: string[] = [];
      for (const f of findings) {
        const why = invalidReason(f);
        if (why) reasons.push(why);
        else valid.push(f);
      }
      if (valid.length === 0) return fail(cb, grpc.status.INVALID_ARGUMENT, `all findings invalid: ${reasons.slice(0, 3).join('; ')}`);
      store.insert(valid).then(
        (r) => {
          const answer = () =>
            cb(null, {
              stored: r.stored,
              duplicates: r.duplicates,
              partialSuccess: reasons.length ? { rejectedFindings: reasons.length, errorMessage: reasons.slice(0, 3).join('; ') } : undefined,
            });
          if (opts.ackDelayMs) setTimeout(answer, opts.ackDelayMs);
          else answer();
        },
        (err: Error) => {
          log(`store failed: ${err.message}`);
          fail(cb, grpc.status.UNAVAILABLE, `store unavailable: ${err.message}`);
        },
      );
    },
  });
  server.addService(healthService(), {
    Check: (_call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) => cb(null, { status: 'SERVING' }),
  });

  const port = await new Promise<number>((res, rej) =>
    server.bindAsync(opts.listen, credentials(opts.tls), (err, p) => (err ? rej(err) : res(p))),
  );
  const host = opts.listen.replace(/:\d+$/, '');
  return {
    address: `${host}:${port}`,
    port,
    store,
    async stop() {
      await new Promise<void>((res) => server.tryShutdown(() => res()));
      await store.close();
    },
  };
}
