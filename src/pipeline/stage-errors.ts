// A stage that throws on a batch loses the rest of that batch, not the
// stream: the error is counted and logged, and the next batch goes on.
import type { Logger } from '../log.js';
import type { Metrics } from './metrics.js';

export function stageFailed(metrics: Metrics, log: Logger, stage: string, err: unknown): void {
  metrics.inc('pipeline_errors_total');
  log.error(`${stage} stage failed, the rest of its batch is dropped: ${err instanceof Error ? err.message : String(err)}`);
}
