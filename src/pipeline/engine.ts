// Signature engine: a table from event kind to the signatures that asked
// for it, and one isolated call per signature. A throwing signature is
// counted; after too many consecutive errors it is disabled (one log line);
// the others never notice. Stream signatures get the same events through
// their own Subjects; their findings arrive on streamFindings. Custom
// signatures (isolated) run in worker threads: they get each batch after the
// built-ins and their findings arrive on streamFindings too.
import { LRUCache } from 'lru-cache';
import { merge, type Observable } from 'rxjs';
import { DEFAULT_LIMITS, isIsolated, type IsolatedSignature, type IsolationLimits, type SensorSignature } from '../signatures/isolated.js';
import {
  containerKey,
  isStreamSignature,
  type AnySignature,
  type DetectionEvent,
  type EmitOptions,
  type EventKindName,
  type EventSignature,
  type SignatureContext,
} from '../sdk/signature.js';
import { buildFinding, type BootClock, type Finding } from './finding.js';
import { IsolatedSignatures } from './isolated-signatures.js';
import type { Metrics } from './metrics.js';
import { StreamSignatures } from './stream-signatures.js';

export interface EngineOptions {
  hostname: string;
  clock: BootClock;
  metrics: Pick<Metrics, 'inc'>;
  /** Limits of the custom signatures' workers. */
  limits?: IsolationLimits;
  maxConsecutiveErrors?: number;
  log?: (msg: string) => void;
  /** Per-signature settings (policy file: signatures.<id>.config). */
  config?: (id: string) => Record<string, unknown>;
  stateEntries?: number;
}

interface Slot {
  sig: EventSignature;
  consecutiveErrors: number;
  disabled: boolean;
  ctx: SignatureContext;
  pending: EmitOptions[];
}

const LOGS_PER_MINUTE = 10;

export class SignatureEngine {
  private table = new Map<EventKindName, Slot[]>();
  private readonly maxErrors: number;
  private readonly streams: StreamSignatures;
  private readonly isolated: IsolatedSignatures | undefined;

  constructor(
    all: SensorSignature[],
    private readonly opts: EngineOptions,
  ) {
    this.maxErrors = opts.maxConsecutiveErrors ?? 100;
    const custom = all.filter(isIsolated);
    const signatures = all.filter((s): s is AnySignature => !isIsolated(s));
    if (custom.length) {
      this.isolated = new IsolatedSignatures(custom, {
        hostname: opts.hostname,
        metrics: opts.metrics,
        log: (m) => opts.log?.(m),
        config: (id) => opts.config?.(id) ?? {},
        limits: opts.limits ?? DEFAULT_LIMITS,
      });
    }
    this.streams = new StreamSignatures(signatures.filter(isStreamSignature), {
      ...opts,
      context: (sig) => {
        const { log, config } = this.slotFor(sig).ctx;
        return { log, config };
      },
    });
    for (const sig of signatures) {
      if (isStreamSignature(sig)) continue;
      const slot = this.slotFor(sig);
      try {
        sig.init?.(slot.ctx);
      } catch (err) {
        this.opts.metrics.inc('signature_errors_total', { signature: sig.id });
        this.opts.log?.(`signature ${sig.id} disabled: init failed: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      for (const kind of sig.events) {
        const slots = this.table.get(kind) ?? [];
        slots.push(slot);
        this.table.set(kind, slots);
      }
    }
  }

  private slotFor(sig: AnySignature): Slot {
    const state = new LRUCache<string, { v: unknown }>({ max: this.opts.stateEntries ?? 1024 });
    let logWindow = 0;
    let logCount = 0;
    const slot: Slot = {
      sig: sig as EventSignature,
      consecutiveErrors: 0,
      disabled: false,
      pending: [],
      ctx: {
        emit: (o: EmitOptions = {}) => void slot.pending.push(o),
        log: (msg: string) => {
          const minute = Math.floor(Date.now() / 60_000);
          if (minute !== logWindow) (logWindow = minute), (logCount = 0);
          if (++logCount <= LOGS_PER_MINUTE) this.opts.log?.(`[${sig.id}] ${msg}`);
          else this.opts.metrics.inc('signature_logs_suppressed_total', { signature: sig.id });
        },
        config: Object.freeze({ ...(this.opts.config?.(sig.id) ?? {}) }),
        containerState: <T>(ev: DetectionEvent, init: () => T): T => {
          const key = containerKey(ev);
          let entry = state.get(key);
          if (!entry) state.set(key, (entry = { v: init() }));
          return entry.v as T;
        },
      },
    };
    return slot;
  }

  /** Ends the stream signatures (their windows flush into streamFindings) and closes the others. */
  close(): void {
    this.endStreams();
    for (const sig of this.eventSignatures) {
      try {
        sig.close?.();
      } catch {
        this.opts.metrics.inc('signature_errors_total', { signature: sig.id });
      }
    }
  }

  private get eventSignatures(): EventSignature[] {
    return [...new Set([...this.table.values()].flat().map((s) => s.sig))];
  }

  get signatures(): SensorSignature[] {
    return [...this.eventSignatures, ...this.streams.signatures, ...(this.isolated?.signatures ?? [])];
  }

  /** The custom signatures, which run in workers. */
  get customSignatures(): IsolatedSignature[] {
    return this.isolated?.signatures ?? [];
  }

  /**
   * Completes the input of the stream and custom signatures: open windows
   * flush, then streamFindings completes (a custom signature that does not
   * finish in time is stopped).
   */
  endStreams(): void {
    this.streams.end();
    this.isolated?.end();
  }

  /** Findings made later than their event's dispatch: stream signatures' and custom signatures'; completes after endStreams(). */
  get streamFindings(): Observable<Finding> {
    return this.isolated ? merge(this.streams.findings, this.isolated.findings) : this.streams.findings;
  }

  /** Findings of the built-in per-event signatures for the batch; then the batch goes to the custom signatures' workers. */
  dispatchBatch(batch: DetectionEvent[]): Finding[] {
    const out: Finding[] = [];
    for (const ev of batch) {
      const found = this.dispatch(ev);
      for (let i = 0; i < found.length; i++) out.push(found[i]!);
    }
    this.isolated?.send(batch);
    return out;
  }

  /** Findings of the per-event signatures; the event also goes on to the stream signatures. */
  dispatch(ev: DetectionEvent): Finding[] {
    this.streams.dispatch(ev);
    const slots = this.table.get(ev.kind);
    if (!slots) return [];
    const out: Finding[] = [];
    for (const slot of slots) {
      if (slot.disabled) continue;
      slot.pending.length = 0;
      try {
        slot.sig.onEvent(ev, slot.ctx);
        slot.consecutiveErrors = 0;
        for (const o of slot.pending) {
          out.push(buildFinding(slot.sig, ev, o, this.opts.hostname, this.opts.clock));
          this.opts.metrics.inc('findings_total', { signature: slot.sig.id });
        }
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
