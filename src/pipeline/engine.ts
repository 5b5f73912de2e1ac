// Signature engine: a table from event kind to the signatures that asked
// for it, and one isolated call per signature. A throwing signature is
// counted; after too many consecutive errors it is disabled (one log line);
// the others never notice.
import type { AnySignature, DetectionEvent, EmitOptions, EventKindName } from '../signatures/sdk.js';
import { buildFinding, type BootClock, type Finding } from './finding.js';
import type { Metrics } from './metrics.js';

export interface EngineOptions {
  hostname: string;
  clock: BootClock;
  metrics: Metrics;
  maxConsecutiveErrors?: number;
  log?: (msg: string) => void;
}

interface Slot {
  sig: AnySignature;
  consecutiveErrors: number;
  disabled: boolean;
}

export class SignatureEngine {
  private table = new Map<EventKindName, Slot[]>();
  private readonly maxErrors: number;

  constructor(
    signatures: AnySignature[],
    private readonly opts: EngineOptions,
  ) {
    this.maxErrors = opts.maxConsecutiveErrors ?? 100;
    for (const sig of signatures) {
      for (const kind of sig.events) {
        const slots = this.table.get(kind) ?? [];
        slots.push({ sig, consecutiveErrors: 0, disabled: false });
        this.table.set(kind, slots);
      }
    }
  }

  get signatures(): AnySignature[] {
    return [...new Set([...this.table.values()].flat().map((s) => s.sig))];
  }

  dispatch(ev: DetectionEvent): Finding[] {
    const slots = this.table.get(ev.kind);
    if (!slots) return [];
    const out: Finding[] = [];
    for (const slot of slots) {
      if (slot.disabled) continue;
      const ctx = {
        emit: (o: EmitOptions = {}) => {
          out.push(buildFinding(slot.sig, ev, o, this.opts.hostname, this.opts.clock));
          this.opts.metrics.inc('findings_total', { signature: slot.sig.id });
        },
      };
      try {
        slot.sig.onEvent(ev, ctx);
        slot.consecutiveErrors = 0;
      } catch (err) {
        this.opts.metrics.inc('signature_errors_total', { signature: slot.sig.id });
        if (++slot.consecutiveErrors >= this.maxErrors) {
          slot.disabled = true;
          this.opts.metrics.inc('signatures_disabled_total', { signature: slot.sig.id });
          this.opts.log?.(
            `signature ${slot.sig.id} disabled after ${slot.consecutiveErrors} consecutive errors; last: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
      }
    }
    return out;
  }
}
