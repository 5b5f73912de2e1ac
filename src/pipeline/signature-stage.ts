// Stage 3: detection events → findings. The engine's table sends each event
// only to the signatures that asked for its kind. The engine is read per
// batch, so a reload (SIGHUP) takes effect between two batches. Stream
// signatures and custom ones (in workers) make findings on their own time;
// they join the output here, and
// the stage completes only once every engine it used has flushed its windows
// (the sensor ends a replaced engine's streams on reload, the stage ends the
// last one when the events end).
import { Observable, type OperatorFunction } from 'rxjs';
import type { Logger } from '../log.js';
import type { DetectionEvent } from '../sdk/signature.js';
import type { SignatureEngine } from './engine.js';
import type { Finding } from './finding.js';
import type { Metrics } from './metrics.js';
import { stageFailed } from './stage-errors.js';

export function detect(engine: () => SignatureEngine, metrics: Metrics, log: Logger): OperatorFunction<DetectionEvent[], Finding[]> {
  return (events) =>
    new Observable<Finding[]>((out) => {
      let sourceDone = false;
      let openStreams = 0;
      let last: SignatureEngine | undefined;
      const streamsClosed = (): void => {
        if (--openStreams === 0 && sourceDone) out.complete();
      };
      const follow = (current: SignatureEngine): void => {
        if (current === last) return;
        last = current;
        openStreams++;
        current.streamFindings.subscribe({ next: (f) => out.next([f]), complete: streamsClosed, error: streamsClosed });
      };
      const sub = events.subscribe({
        next(batch) {
          let findings: Finding[] = [];
          try {
            const current = engine();
            follow(current);
            findings = current.dispatchBatch(batch);
          } catch (err) {
            stageFailed(metrics, log, 'signatures', err);
          }
          if (findings.length) out.next(findings);
        },
        error: (err) => out.error(err),
        complete() {
          sourceDone = true;
          const current = engine();
          follow(current);
          current.endStreams();
          if (openStreams === 0) out.complete();
        },
      });
      return sub;
    });
}
