// Real receivers on loopback for the integrations: an HTTP server that takes
// Falco http_output POSTs as Falcosidekick does and checks their shape and
// headers, and a gRPC OTLP LogsService that decodes what arrives.
import * as grpc from '@grpc/grpc-js';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const FALCO_PRIORITIES = ['Emergency', 'Alert', 'Critical', 'Error', 'Warning', 'Notice', 'Informational', 'Debug'];

/** Why a POST is not a Falco alert as Falcosidekick reads it, or null when it is. */
export function falcoShapeProblem(req: IncomingMessage, body: string): string | null {
  if (req.method !== 'POST') return `method ${req.method}`;
  if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) return `content-type ${req.headers['content-type']}`;
  let a: Record<string, unknown>;
  try {
    a = JSON.parse(body) as Record<string, unknown>;
  } catch {
    return 'body is not JSON';
  }
  for (const k of ['uuid', 'output', 'priority', 'rule', 'time', 'source', 'hostname']) if (typeof a[k] !== 'string' || !a[k]) return `${k} missing`;
  if (!FALCO_PRIORITIES.includes(a['priority'] as string)) return `priority ${String(a['priority'])}`;
  if (Number.isNaN(Date.parse(a['time'] as string))) return 'time is not RFC 3339';
  if (!Array.isArray(a['tags'])) return 'tags is not a list';
  const of = a['output_fields'];
  if (!of || typeof of !== 'object' || Array.isArray(of)) return 'output_fields is not an object';
  for (const k of ['proc.exepath', 'container.id', 'evt.time.iso8601']) if (!(k in of)) return `output_fields.${k} missing`;
  return null;
}

export interface FalcoReceiver {
  url: string;
  port: number;
  /** Accepted alerts, in arrival order. */
  alerts: Array<Record<string, unknown>>;
  problems: string[];
  userAgents: Set<string>;
  /** Status to answer with instead of 200, for the next n requests. */
  failNext(n: number, status: number): void;
  close(): Promise<void>;
}

export async function startFalcoReceiver(port = 0): Promise<FalcoReceiver> {
  const alerts: Array<Record<string, unknown>> = [];
  const problems: string[] = [];
  const userAgents = new Set<string>();
  let fail = { n: 0, status: 200 };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      if (fail.n > 0) {
        fail.n--;
        res.writeHead(fail.status).end();
        return;
      }
      const problem = falcoShapeProblem(req, body);
      if (problem) {
        problems.push(problem);
        res.writeHead(400).end(problem);
        return;
      }
      userAgents.add(req.headers['user-agent'] ?? '');
      alerts.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(200).end();
    });
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const p = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${p}/`,
    port: p,
    alerts,
    problems,
    userAgents,
    failNext: (n, status) => void (fail = { n, status }),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface OtlpLogRecord {
  resource: Record<string, unknown>;
  scope: string;
  severityNumber: number;
  severityText: string;
  body: unknown;
  eventName: string;
  timeUnixNano: string;
  attributes: Record<string, unknown>;
}

export interface OtlpReceiver {
  endpoint: string;
  records: OtlpLogRecord[];
  requests: number;
  /** gRPC status to answer with for the next n calls. */
  failNext(n: number, code: grpc.status): void;
  close(): Promise<void>;
}

type AnyValueJson = { stringValue?: string; boolValue?: boolean; intValue?: string | number; doubleValue?: number; arrayValue?: { values?: AnyValueJson[] } };
const anyValue = (v: AnyValueJson | undefined): unknown => {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(anyValue);
  return undefined;
};
const kv = (list: Array<{ key: string; value?: AnyValueJson }> | undefined) => Object.fromEntries((list ?? []).map((a) => [a.key, anyValue(a.value)]));

export async function startOtlpReceiver(port = 0): Promise<OtlpReceiver> {
  const root = protobuf.loadSync(join(repoRoot, 'test', 'fixtures', 'otlp', 'logs_service_subset.proto'));
  const Req = root.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest');
  const Res = root.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse');
  const records: OtlpLogRecord[] = [];
  let fail = { n: 0, code: grpc.status.OK };
  const state = { requests: 0 };
  const server = new grpc.Server();
  server.addService(
    {
      Export: {
        path: '/opentelemetry.proto.collector.logs.v1.LogsService/Export',
        requestStream: false,
        responseStream: false,
        requestDeserialize: (b: Buffer) => Req.toObject(Req.decode(b), { longs: String, defaults: false }),
        requestSerialize: (o: object) => Buffer.from(Req.encode(Req.fromObject(o)).finish()),
        responseSerialize: (o: object) => Buffer.from(Res.encode(Res.fromObject(o)).finish()),
        responseDeserialize: (b: Buffer) => Res.toObject(Res.decode(b)),
      },
    },
    {
      Export: (call: grpc.ServerUnaryCall<Record<string, unknown>, object>, cb: grpc.sendUnaryData<object>) => {
        state.requests++;
        if (fail.n > 0) {
          fail.n--;
          cb({ code: fail.code, details: 'test receiver says no' });
          return;
        }
        const req = call.request as { resourceLogs?: Array<{ resource?: { attributes?: [] }; scopeLogs?: Array<{ scope?: { name?: string }; logRecords?: Array<Record<string, unknown>> }> }> };
        for (const rl of req.resourceLogs ?? []) {
          for (const sl of rl.scopeLogs ?? []) {
            for (const r of sl.logRecords ?? []) {
              records.push({
                resource: kv(rl.resource?.attributes),
                scope: sl.scope?.name ?? '',
                severityNumber: Number(r['severityNumber'] ?? 0),
                severityText: String(r['severityText'] ?? ''),
                body: anyValue(r['body'] as AnyValueJson),
                eventName: String(r['eventName'] ?? ''),
                timeUnixNano: String(r['timeUnixNano'] ?? '0'),
                attributes: kv(r['attributes'] as Array<{ key: string; value?: AnyValueJson }>),
              });
            }
          }
        }
        cb(null, {});
      },
    },
  );
  const bound = await new Promise<number>((res, rej) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
  );
  return {
    endpoint: `http://127.0.0.1:${bound}`,
    records,
    get requests() {
      return state.requests;
    },
    failNext: (n, code) => void (fail = { n, code }),
    close: () => new Promise<void>((r) => server.tryShutdown(() => r())),
  };
}
