// Falco's http_output: each finding is POSTed alone, as Falco's JSON alert,
// so Falcosidekick (and its outputs: Slack, Loki, Elasticsearch, Kafka,
// Talon, ...) takes driftwatch findings unchanged. Transport only; the
// exporter around it spools, batches and retries.
import type { FindingJson } from '#gen/finding-json.js';
import { toFalco } from '../pipeline/falco-sink.js';
import type { ExportOutcome, FindingTransport } from './transport.js';

export interface FalcoHttpOptions {
  url: string;
  /** Extra request headers (an Authorization for a proxy in front of Falcosidekick). */
  headers?: Record<string, string>;
  timeoutMs?: number;
  userAgent?: string;
}

/** Statuses after which the same request may succeed later. */
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

export class FalcoHttpTransport implements FindingTransport {
  private readonly timeoutMs: number;
  private readonly headers: Record<string, string>;

  constructor(private readonly opts: FalcoHttpOptions) {
    const u = new URL(opts.url); // throws on a malformed URL
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`falco http output: ${opts.url} is not an http(s) URL`);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.headers = { 'content-type': 'application/json', 'user-agent': opts.userAgent ?? 'driftwatch', ...(opts.headers ?? {}) };
  }

  async export(findings: FindingJson[]): Promise<ExportOutcome> {
    let sent = 0;
    let rejected = 0;
    let rejectReason: string | undefined;
    // In order, one request each, as Falco does. A retryable failure stops the
    // batch; the exporter sends it again from the first finding (at least once:
    // receivers see Falco's uuid, which is the finding id, to drop repeats).
    for (const f of findings) {
      let res: Response;
      try {
        res = await fetch(this.opts.url, {
          method: 'POST',
          headers: this.headers,
          body: JSON.stringify(toFalco(f)),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        await res.arrayBuffer().catch(() => undefined);
      } catch (err) {
        return { kind: 'retryable', code: 0, message: `POST ${this.opts.url}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}` };
      }
      if (res.ok) sent++;
      else if (RETRYABLE.has(res.status)) return { kind: 'retryable', code: res.status, message: `POST ${this.opts.url}: HTTP ${res.status}` };
      else {
        rejected++;
        rejectReason = `HTTP ${res.status}`;
      }
    }
    return { kind: 'ok', stored: sent, duplicates: 0, rejected, ...(rejectReason ? { rejectReason } : {}) };
  }

  close(): void {}
}
