// Stage 3: detection events → findings. The engine's table sends each event
// only to the signatures that asked for its kind. The engine is read per
// batch, so a reload (SIGHUP) takes effect between two batches.
import { Observable, type OperatorFunction } from 'rxjs';
import type { Logger } from '../log.js';
import type { DetectionEvent } from '../signatures/sdk.js';
import type { SignatureEngine } from './engine.js';
import type { Finding } from './finding.js';
import type { Metrics } from './metrics.js';
import { stageFailed } from './stage-errors.js';

export function detect(engine: () => SignatureEngine, metrics: Metrics, log: Logger): OperatorFunction<DetectionEvent[], Finding[]> {
  return (events) =>
    new Observable<Finding[]>((out) =>
      events.subscribe({
        next(batch) {
          const findings: Finding[] = [];
          try {
            const current = engine();
            for (const ev of batch) {
              const found = current.dispatch(ev);
              for (let i = 0; i < found.length; i++) findings.push(found[i]!);
            }
          } catch (err) {
            stageFailed(metrics, log, 'signatures', err);
          }
          if (findings.length) out.next(findings);
        },
        error: (err) => out.error(err),
        complete: () => out.complete(),
      }),
    );
}
