// Stage 5: findings → every sink. A failing sink is counted and logged; the
// other sinks still get the finding. How long the finding took from the exec
// in the kernel to here is observed once it is written.
import { tap, type MonoTypeOperatorFunction } from 'rxjs';
import type { Logger } from '../log.js';
import { BootClock, eventTimeOf, type Finding } from './finding.js';
import type { Metrics } from './metrics.js';
import type { Sink } from './sinks.js';

export function writeToSinks(sinks: Sink[], metrics: Metrics, log: Logger, clock = new BootClock()): MonoTypeOperatorFunction<Finding> {
  return tap((f) => {
    for (const sink of sinks) {
      try {
        sink.write(f);
      } catch (err) {
        metrics.inc('sink_errors_total');
        log.warn(`sink failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    const at = eventTimeOf(f);
    if (at !== undefined) metrics.observe('finding_latency_seconds', Number(clock.nowNs() - at) / 1e9);
  });
}
