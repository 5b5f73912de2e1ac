// Stage 2: records → detection events. Host processes are dropped here
// (counted) unless asked for. Most events need no lookup and leave with
// their batch; the few that do (drift candidates: file hash, container
// metadata, script layer) follow on their own when the lookup settles, so a
// slow lookup never holds the batch. The stage completes only after every
// lookup it started has settled: nothing is lost at shutdown.
import { Observable, type OperatorFunction } from 'rxjs';
import type { Logger } from '../log.js';
import type { DetectionEvent } from '../sdk/signature.js';
import type { DecodedEvent } from './decode.js';
import type { Enricher } from './enrich.js';
import type { Metrics } from './metrics.js';
import { stageFailed } from './stage-errors.js';

export interface EnrichStageOptions {
  metrics: Metrics;
  log: Logger;
  includeHost?: boolean;
  /** Sees every event first; true takes it out of the stream (the self-test's own execs). */
  claim?: (ev: DetectionEvent) => boolean;
}

export function enrichEvents(enricher: Enricher, opts: EnrichStageOptions): OperatorFunction<DecodedEvent[], DetectionEvent[]> {
  const { metrics, log } = opts;
  const includeHost = opts.includeHost ?? false;
  let inflight = 0;
  metrics.gauge('enrichment_inflight', () => inflight);
  const wanted = (ev: DetectionEvent): boolean => {
    if (opts.claim?.(ev)) return false;
    if (ev.container.inContainer || includeHost) return true;
    metrics.inc('host_events_dropped_total');
    return false;
  };
  return (records) =>
    new Observable<DetectionEvent[]>((out) => {
      let sourceDone = false;
      const settled = (): void => {
        if (--inflight === 0 && sourceDone) out.complete();
      };
      return records.subscribe({
        next(batch) {
          const ready: DetectionEvent[] = [];
          try {
            for (const rec of batch) {
              const ev = enricher.enrich(rec);
              if (!(ev instanceof Promise)) {
                if (wanted(ev)) ready.push(ev);
                continue;
              }
              inflight++;
              ev.then(
                (done) => wanted(done) && out.next([done]),
                (err: unknown) => stageFailed(metrics, log, 'enrich', err),
              ).finally(settled);
            }
          } catch (err) {
            stageFailed(metrics, log, 'enrich', err);
          }
          if (ready.length) out.next(ready);
        },
        error: (err) => out.error(err),
        complete() {
          sourceDone = true;
          if (inflight === 0) out.complete();
        },
      });
    });
}
