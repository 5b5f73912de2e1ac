// The batching processor: findings go to the disk spool at once, and a
// sender drains the spool in order in batches (by size, or every flushMs;
// by default a finding goes out in the same turn of the event loop, and
// batches form from what arrives while a send is in flight),
// retrying with exponential backoff and full jitter until the backend has
// confirmed them. Every outcome is counted.
import type { FindingJson } from '#gen/finding-json.js';
import { GrpcTransport, type TransportOptions } from './grpc-transport.js';
import { Spool } from './spool.js';
import type { FindingTransport } from './transport.js';

export interface ExporterOptions extends Partial<TransportOptions> {
  /** The destination; by default the gRPC FindingService at `backend`. */
  transport?: FindingTransport;
  spoolDir: string;
  spoolMaxBytes?: number;
  maxBatch?: number;
  flushMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  log?: (msg: string) => void;
  /** Seconds from sending each batch to the answer (confirmed, rejected or failed). */
  observeLatency?: (seconds: number) => void;
}

export interface ExporterMetrics {
  export_spooled_total: number;
  export_sent_total: number;
  export_stored_total: number;
  export_duplicates_total: number;
  export_retries_total: number;
  export_rejected_total: number;
  export_dropped_total: number;
  export_spool_corrupt_total: number;
}

export class Exporter {
  readonly metrics: ExporterMetrics = {
    export_spooled_total: 0,
    export_sent_total: 0,
    export_stored_total: 0,
    export_duplicates_total: 0,
    export_retries_total: 0,
    export_rejected_total: 0,
    export_dropped_total: 0,
    export_spool_corrupt_total: 0,
  };
  private readonly spool: Spool;
  private readonly transport: FindingTransport;
  private readonly maxBatch: number;
  private readonly flushMs: number;
  private readonly backoffBase: number;
  private readonly backoffMax: number;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private closed = false;
  private lastError = '';

  constructor(private readonly opts: ExporterOptions) {
    this.spool = new Spool({ dir: opts.spoolDir, maxBytes: opts.spoolMaxBytes });
    if (!opts.transport && !opts.backend) throw new Error('exporter: a transport or a backend address is needed');
    this.transport = opts.transport ?? new GrpcTransport(opts as TransportOptions);
    this.maxBatch = opts.maxBatch ?? 512;
    this.flushMs = opts.flushMs ?? 0;
    this.backoffBase = opts.backoffBaseMs ?? 200;
    this.backoffMax = opts.backoffMaxMs ?? 30_000;
    // Findings left by a previous run (crash, SIGKILL) go out first.
    this.schedule(0);
  }

  /** Accepts a finding: on disk when this returns. */
  export(f: FindingJson): void {
    this.spool.append(Buffer.from(JSON.stringify(f)));
    this.metrics.export_spooled_total++;
    this.syncSpoolStats();
    if (!this.timer && !this.sending) this.schedule(this.flushMs);
  }

  get queuedBytes(): number {
    return this.spool.bytes;
  }

  private syncSpoolStats(): void {
    this.metrics.export_dropped_total = this.spool.stats.dropped;
    this.metrics.export_spool_corrupt_total = this.spool.stats.corrupt;
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sending = this.sendOnce().finally(() => (this.sending = undefined));
    }, ms);
  }

  private backoff(): number {
    const cap = Math.min(this.backoffMax, this.backoffBase * 2 ** Math.min(this.attempt, 20));
    return Math.random() * cap; // full jitter: sensors restarting together do not retry together
  }

  /** Sends one batch from the spool; schedules the next send (now if more is pending, after a backoff on failure). */
  private async sendOnce(): Promise<void> {
    const { records, token } = this.spool.peek(this.maxBatch);
    this.syncSpoolStats();
    if (records.length === 0) return;
    const findings = records.map((r) => JSON.parse(r.toString('utf8')) as FindingJson);
    const sentAt = performance.now();
    const outcome = await this.transport.export(findings);
    this.opts.observeLatency?.((performance.now() - sentAt) / 1000);
    if (outcome.kind === 'retryable') {
      this.metrics.export_retries_total++;
      this.attempt++;
      if (outcome.message !== this.lastError) this.opts.log?.(`export failed, will retry: ${outcome.message}`);
      this.lastError = outcome.message;
      return this.schedule(this.backoff());
    }
    this.attempt = 0;
    this.lastError = '';
    if (outcome.kind === 'final') {
      // The backend will never take this batch as it is: drop it, counted.
      this.metrics.export_rejected_total += findings.length;
      this.opts.log?.(`backend rejected a batch of ${findings.length}: ${outcome.message}`);
    } else {
      this.metrics.export_sent_total += findings.length;
      this.metrics.export_stored_total += outcome.stored;
      this.metrics.export_duplicates_total += outcome.duplicates;
      this.metrics.export_rejected_total += outcome.rejected;
      if (outcome.rejected) this.opts.log?.(`backend rejected ${outcome.rejected} finding(s): ${outcome.rejectReason ?? ''}`);
    }
    this.spool.ack(token);
    if (this.spool.pending) this.schedule(0);
  }

  /** Sends everything spooled, waiting up to timeoutMs. Returns whether the spool is empty. */
  async flush(timeoutMs = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.sending) await this.sending;
      if (!this.spool.pending) return true;
      if (!this.timer && !this.sending) this.schedule(0);
      await new Promise((r) => setTimeout(r, 20));
    }
    return !this.spool.pending;
  }

  /** Flushes what it can in time; whatever is left stays in the spool for the next start. */
  async shutdown(timeoutMs = 5_000): Promise<void> {
    await this.flush(timeoutMs);
    this.closed = true;
    clearTimeout(this.timer);
    if (this.sending) await this.sending;
    this.spool.close();
    this.transport.close();
  }
}
