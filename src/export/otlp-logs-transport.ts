// OTLP logs: a finding becomes one log record, sent with the OpenTelemetry JS
// exporter (gRPC), so any OpenTelemetry Collector can route it. Attributes
// use OpenTelemetry's semantic conventions where one exists (container.*,
// k8s.*, process.*, host.name); the rest is under driftwatch.*.
// Transport only; the exporter around it spools, batches and retries.
import { credentials } from '@grpc/grpc-js';
import type { Attributes } from '@opentelemetry/api';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-grpc';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableLogRecord } from '@opentelemetry/sdk-logs';
import { hostname } from 'node:os';
import type { FindingJson } from '#gen/finding-json.js';
import type { ExportOutcome, FindingTransport } from './transport.js';

export interface OtlpLogsOptions {
  /** host:port (TLS), http://host:port (plaintext) or https://host:port. */
  endpoint: string;
  timeoutMs?: number;
  version?: string;
}

/** OpenTelemetry SeverityNumber for each driftwatch severity. */
const SEVERITY_NUMBER: Record<string, number> = { INFO: 9, LOW: 10, MEDIUM: 13, HIGH: 17, CRITICAL: 21 };
const SCOPE = { name: 'driftwatch' };

function hrTime(iso: string | undefined): [number, number] {
  const ms = iso ? Date.parse(iso) : NaN;
  const t = Number.isNaN(ms) ? Date.now() : ms;
  return [Math.floor(t / 1000), (t % 1000) * 1e6];
}

export function findingAttributes(f: FindingJson): Attributes {
  const a: Attributes = {};
  const set = (k: string, v: string | number | boolean | string[] | undefined | null) => {
    if (v !== undefined && v !== null && v !== '') a[k] = v;
  };
  const p = f.process ?? {};
  const x = p.executable ?? {};
  const c = f.container ?? {};
  const k = f.kubernetes ?? {};
  set('container.id', c.id);
  set('container.name', c.name);
  set('container.image.name', c.image);
  set('container.image.id', c.imageId);
  set('container.runtime.name', c.runtime);
  for (const [name, value] of Object.entries(c.labels ?? {})) set(`container.label.${name}`, value);
  set('k8s.namespace.name', k.namespace);
  set('k8s.pod.name', k.pod);
  set('k8s.pod.uid', k.podUid);
  set('k8s.container.name', k.container);
  set('process.pid', p.hostPid);
  set('process.parent_pid', p.hostPpid);
  set('process.executable.path', x.path);
  set('process.executable.name', x.path?.split('/').pop());
  set('process.command_args', p.args);
  set('process.user.id', p.uid);
  set('host.name', f.host?.hostname);
  set('driftwatch.finding.id', f.id);
  set('driftwatch.signature.id', f.signature?.id);
  set('driftwatch.signature.name', f.signature?.name);
  set('driftwatch.mitre.technique', f.signature?.mitre?.technique);
  set('driftwatch.executable.layer', x.layer);
  set('driftwatch.executable.sha256', x.sha256);
  set('driftwatch.executable.installed_by', x.installedBy?.manager);
  set('driftwatch.process.session', p.session);
  set('driftwatch.process.pid_in_container', p.pid);
  set('driftwatch.process.ancestry', (p.ancestry ?? []).map((an) => an.comm ?? ''));
  set('driftwatch.count', f.count);
  set('driftwatch.fold_of', f.foldOf);
  return a;
}

export function toLogRecord(f: FindingJson, resource: Resource): ReadableLogRecord {
  const t = hrTime(f.time);
  const body: ReadableLogRecord['body'] = `${f.signature?.name ?? f.signature?.id}: ${f.process?.executable?.path ?? ''} in ${f.container?.name || f.container?.id?.slice(0, 12) || 'host'}`;
  return {
    hrTime: t,
    hrTimeObserved: hrTime(undefined),
    severityNumber: SEVERITY_NUMBER[f.signature?.severity ?? ''] ?? 13,
    severityText: f.signature?.severity ?? 'MEDIUM',
    body,
    eventName: 'driftwatch.finding',
    resource,
    instrumentationScope: SCOPE,
    attributes: findingAttributes(f),
    droppedAttributesCount: 0,
  };
}

export class OtlpLogsTransport implements FindingTransport {
  private readonly exporter: OTLPLogExporter;
  private readonly resource: Resource;

  constructor(opts: OtlpLogsOptions) {
    const m = /^(?:(https?):\/\/)?([^/\s]+?)\/?$/.exec(opts.endpoint);
    if (!m) throw new Error(`otlp logs: bad endpoint ${opts.endpoint} (host:port or http(s)://host:port)`);
    const plaintext = m[1] === 'http';
    this.exporter = new OTLPLogExporter({
      url: `${plaintext ? 'http' : 'https'}://${m[2]}`,
      credentials: plaintext ? credentials.createInsecure() : credentials.createSsl(),
      timeoutMillis: opts.timeoutMs ?? 10_000,
    });
    this.resource = resourceFromAttributes({ 'service.name': 'driftwatch', ...(opts.version ? { 'service.version': opts.version } : {}), 'host.name': hostname() });
  }

  export(findings: FindingJson[]): Promise<ExportOutcome> {
    const records = findings.map((f) => toLogRecord(f, this.resource));
    return new Promise((resolve) => {
      this.exporter.export(records, (r) => {
        // The OpenTelemetry exporter already retried what gRPC calls retryable
        // within its timeout; the spool keeps the batch and tries again later.
        if (r.code === 0) resolve({ kind: 'ok', stored: findings.length, duplicates: 0, rejected: 0 });
        else resolve({ kind: 'retryable', code: 0, message: r.error?.message ?? 'export failed' });
      });
    });
  }

  close(): void {
    void this.exporter.shutdown().catch(() => undefined);
  }
}
