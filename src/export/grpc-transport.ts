// Transport only: sends one batch to FindingService.Export and says how it
// went. It knows gRPC, TLS, tokens and compression; nothing about batching,
// retries or the spool.
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { driftwatch } from '#gen/finding.js';
import type { FindingJson } from '#gen/finding-json.js';
import type { ExportOutcome, FindingTransport } from './transport.js';

export interface TransportOptions {
  backend: string; // host:port
  token?: string;
  tls?: { ca?: string; cert?: string; key?: string; serverName?: string };
  deadlineMs?: number;
  gzip?: boolean;
}

export type { ExportOutcome } from './transport.js';

/** Codes after which the same batch may succeed later. */
const RETRYABLE = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.CANCELLED,
  // A wrong token or certificate is an operator's mistake, not the findings':
  // keep them and keep trying (slowly) until it is fixed.
  grpc.status.UNAUTHENTICATED,
  grpc.status.PERMISSION_DENIED,
]);

const { ExportRequest, ExportResponse } = driftwatch.v1;

export class GrpcTransport implements FindingTransport {
  private client: grpc.Client;
  private readonly deadlineMs: number;

  constructor(private readonly opts: TransportOptions) {
    this.deadlineMs = opts.deadlineMs ?? 10_000;
    const creds = opts.tls
      ? grpc.credentials.createSsl(
          opts.tls.ca ? readFileSync(opts.tls.ca) : null,
          opts.tls.key ? readFileSync(opts.tls.key) : null,
          opts.tls.cert ? readFileSync(opts.tls.cert) : null,
        )
      : grpc.credentials.createInsecure();
    const options: grpc.ClientOptions = {
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5_000,
    };
    if (opts.gzip !== false) options['grpc.default_compression_algorithm'] = 2; // gzip
    if (opts.tls?.serverName) options['grpc.ssl_target_name_override'] = opts.tls.serverName;
    this.client = new grpc.Client(opts.backend, creds, options);
  }

  export(findings: FindingJson[]): Promise<ExportOutcome> {
    const md = new grpc.Metadata();
    if (this.opts.token) md.set('authorization', `Bearer ${this.opts.token}`);
    const body = Buffer.from(ExportRequest.encode(ExportRequest.fromObject({ findings })).finish());
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(
        '/driftwatch.v1.FindingService/Export',
        (b: Buffer) => b,
        (b: Buffer) => ExportResponse.decode(b),
        body,
        md,
        { deadline: Date.now() + this.deadlineMs },
        (err, res) => {
          if (err) {
            return resolve({ kind: RETRYABLE.has(err.code) ? 'retryable' : 'final', code: err.code, message: err.details || err.message });
          }
          const ps = res?.partialSuccess;
          resolve({
            kind: 'ok',
            stored: res?.stored ?? 0,
            duplicates: res?.duplicates ?? 0,
            rejected: ps?.rejectedFindings ?? 0,
            ...(ps?.errorMessage ? { rejectReason: ps.errorMessage } : {}),
          });
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
