// What the exporter needs from a destination: send one batch, say how it went.
// Retries, batching and the spool are the exporter's (exporter.ts).
import type { FindingJson } from '#gen/finding-json.js';

export type ExportOutcome =
  | { kind: 'ok'; stored: number; duplicates: number; rejected: number; rejectReason?: string }
  /** The same batch may succeed later: keep it and retry with backoff. */
  | { kind: 'retryable'; code: number; message: string }
  /** The destination will never take this batch: drop it, counted as rejected. */
  | { kind: 'final'; code: number; message: string };

export interface FindingTransport {
  export(findings: FindingJson[]): Promise<ExportOutcome>;
  close(): void;
}
