// Stage 5: findings → what is reported. Repeats of the same file within the
// dedup window are folded (src/report/dedup.ts); the window's summary is
// emitted later and on its own, so the stage owns one Deduplicator whose
// output is wired to the stream, and summarises what is open when the stream
// completes. Reporting comes after every stage that must see each finding
// (signatures, policy, stream signatures, prevention): put those before it.
import { Observable, type MonoTypeOperatorFunction, type Subscriber } from 'rxjs';
import type { Logger } from '../log.js';
import { Deduplicator } from '../report/dedup.js';
import type { Finding } from './finding.js';
import type { Metrics } from './metrics.js';
import { stageFailed } from './stage-errors.js';

export interface ReportOperator extends MonoTypeOperatorFunction<Finding> {
  /** The running deduplicator; `setWindow()` applies to groups opened from then on. */
  readonly dedup: Deduplicator;
}

export function reportFindings(windowMs: number, metrics: Metrics, log: Logger): ReportOperator {
  let out: Subscriber<Finding> | undefined;
  const dedup = new Deduplicator({ windowMs }, metrics, (f) => out?.next(f));
  const operator = (findings: Observable<Finding>) =>
    new Observable<Finding>((subscriber) => {
      out = subscriber;
      return findings.subscribe({
        next(f) {
          try {
            dedup.add(f);
          } catch (err) {
            stageFailed(metrics, log, 'report', err);
          }
        },
        error: (err) => subscriber.error(err),
        complete() {
          dedup.flush();
          subscriber.complete();
        },
      });
    });
  return Object.assign(operator, { dedup });
}
