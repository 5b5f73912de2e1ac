// Stream signatures inside the engine: one Subject per signature fed with
// the events of its kinds, its detect() operator subscribed once, and every
// finding it makes merged into one output. Completing the inputs (end of
// stream, reload) lets open windows flush before the output completes.
import { Observable, Subject, type Subscription } from 'rxjs';
import { recordOf, type DetectionEvent, type EventKindName, type StreamContext, type StreamFinding, type StreamSignature } from '../sdk/signature.js';
import { buildFinding, type BootClock, type Finding } from './finding.js';
import type { Metrics } from './metrics.js';

export interface StreamOptions {
  hostname: string;
  clock: BootClock;
  metrics: Pick<Metrics, 'inc'>;
  log?: (msg: string) => void;
  context: (sig: StreamSignature) => StreamContext;
}

interface StreamSlot {
  sig: StreamSignature;
  input: Subject<DetectionEvent>;
  sub?: Subscription;
}

/** How long a signature may take to complete after its input did before it is cut off. */
const FLUSH_LIMIT_MS = 2_000;

export class StreamSignatures {
  private readonly table = new Map<EventKindName, StreamSlot[]>();
  private readonly slots: StreamSlot[] = [];
  private readonly out = new Subject<Finding>();
  private open = 0;
  private ended = false;
  /**
   * The findings of every stream signature; completes once all have
   * completed after end(). The signatures start with the first subscriber:
   * an engine nobody follows for them (a per-event test) runs no windows.
   */
  readonly findings: Observable<Finding> = new Observable<Finding>((sub) => {
    this.start();
    return this.out.subscribe(sub);
  });

  constructor(private readonly pending: StreamSignature[], private readonly opts: StreamOptions) {}

  private start(): void {
    const opts = this.opts;
    const signatures = this.pending.splice(0);
    for (const sig of signatures) {
      const slot: StreamSlot = { sig, input: new Subject<DetectionEvent>() };
      let output: Observable<StreamFinding>;
      try {
        output = sig.detect(slot.input.asObservable(), opts.context(sig));
      } catch (err) {
        this.failed(sig, 'detect() threw', err);
        continue;
      }
      this.open++;
      this.slots.push(slot);
      for (const kind of sig.events as EventKindName[]) {
        const slots = this.table.get(kind) ?? [];
        slots.push(slot);
        this.table.set(kind, slots);
      }
      slot.sub = output.subscribe({
        next: (found) => {
          try {
            const { event, ...emit } = found;
            this.out.next(buildFinding(sig, event, emit, opts.hostname, opts.clock));
            opts.metrics.inc('findings_total', { signature: sig.id });
          } catch (err) {
            this.failed(sig, 'made an invalid finding', err, false);
          }
        },
        error: (err: unknown) => {
          this.failed(sig, 'stream failed', err);
          this.closed(slot);
        },
        complete: () => this.closed(slot),
      });
    }
  }

  get signatures(): StreamSignature[] {
    return [...this.slots.map((s) => s.sig), ...this.pending];
  }

  /** Hands the event to the stream signatures that asked for its kind; they get their own copy of the record. */
  dispatch(ev: DetectionEvent): void {
    const slots = this.table.get(ev.kind);
    if (!slots?.length) return;
    recordOf(ev).detach();
    for (const slot of slots) {
      if (slot.input.closed) continue;
      try {
        slot.input.next(ev);
      } catch (err) {
        this.failed(slot.sig, 'threw on an event', err, false);
      }
    }
  }

  /** Completes every input: windows flush, then the findings complete. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.pending.length = 0;
    for (const slot of this.slots) slot.input.complete();
    if (this.open === 0) return this.out.complete();
    const cutOff = setTimeout(() => {
      for (const slot of this.slots) {
        if (slot.sub?.closed !== false) continue;
        this.opts.metrics.inc('signature_errors_total', { signature: slot.sig.id });
        this.opts.log?.(`signature ${slot.sig.id} did not complete within ${FLUSH_LIMIT_MS} ms after its input; cut off`);
        slot.sub.unsubscribe();
        this.closed(slot);
      }
    }, FLUSH_LIMIT_MS);
    cutOff.unref();
    this.out.subscribe({ complete: () => clearTimeout(cutOff) });
  }

  private closed(slot: StreamSlot): void {
    this.table.forEach((slots, kind) => this.table.set(kind, slots.filter((s) => s !== slot)));
    if (--this.open === 0 && this.ended) this.out.complete();
  }

  private failed(sig: StreamSignature, what: string, err: unknown, disabled = true): void {
    this.opts.metrics.inc('signature_errors_total', { signature: sig.id });
    if (disabled) this.opts.metrics.inc('signatures_disabled_total', { signature: sig.id });
    this.opts.log?.(`signature ${sig.id} ${what}${disabled ? ', disabled' : ''}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
