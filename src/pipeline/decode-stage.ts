// Stage 1: kernel batches → records. Runs synchronously inside the source's
// emit, because the batch buffer is refilled on the next drain; records stay
// views into it until a later stage detaches the few it keeps.
import { Observable, type OperatorFunction } from 'rxjs';
import type { Logger } from '../log.js';
import { decodeBatch, type DecodedEvent } from './decode.js';
import type { Metrics } from './metrics.js';
import type { Batch } from './source.js';
import { stageFailed } from './stage-errors.js';

export function decodeRecords(metrics: Metrics, log: Logger): OperatorFunction<Batch, DecodedEvent[]> {
  return (batches) =>
    new Observable<DecodedEvent[]>((out) =>
      batches.subscribe({
        next(b) {
          let events: DecodedEvent[];
          try {
            const decoded = decodeBatch(b.buf, b.length);
            events = decoded.events;
            metrics.inc('events_decoded_total', {}, events.length);
            let mmaps = 0;
            for (const e of events) if (e.kind === 'mmap_exec') mmaps++;
            if (events.length > mmaps) metrics.inc('events_total', { kind: 'exec' }, events.length - mmaps);
            if (mmaps) metrics.inc('events_total', { kind: 'mmap_exec' }, mmaps);
            if (decoded.errors.length) {
              metrics.inc('decode_errors_total', {}, decoded.errors.length);
              log.debug(`dropped ${decoded.errors.length} malformed record(s): ${decoded.errors[0]}`);
            }
          } catch (err) {
            return stageFailed(metrics, log, 'decode', err);
          }
          if (events.length) out.next(events);
        },
        error: (err) => out.error(err),
        complete: () => out.complete(),
      }),
    );
}
