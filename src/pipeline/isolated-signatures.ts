// Custom signatures beside the engine: one worker thread each, fed a batch at
// a time (the records' bytes in one shared buffer, the enrichment
// structured-cloned), their findings merged into the engine's later findings.
// A watchdog on this thread reads each worker's progress counter: a worker
// busy on one event past the budget is terminated, as is one that runs out of
// memory (resourceLimits), crashes or exits. Each such signature is disabled
// until the next reload, logged by id and name, and counted; its queued events
// are counted as dropped. Built-ins never wait for a worker.
import { Worker } from 'node:worker_threads';
import { Observable, Subject } from 'rxjs';
import { endReason, WORKER_URL, workerResourceLimits, type IsolatedSignature, type IsolationLimits } from '../signatures/isolated.js';
import type { BatchMessage, CounterDelta, EventExtras, FromWorker, RunData } from '../signatures/isolated-worker.js';
import type { ContainerInfo } from './container.js';
import { recordOf, type DetectionEvent, type EventKindName } from '../sdk/signature.js';
import type { Finding } from './finding.js';
import type { Metrics } from './metrics.js';

export interface IsolatedOptions {
  hostname: string;
  metrics: Pick<Metrics, 'inc'>;
  log: (msg: string) => void;
  config: (id: string) => Record<string, unknown>;
  limits: IsolationLimits;
}

type StopReason = 'time_budget' | 'memory' | 'crashed' | 'load';

interface Runner {
  sig: IsolatedSignature;
  kinds: Set<EventKindName>;
  worker: Worker;
  progress: Int32Array;
  /** Events posted to the worker. */
  sent: number;
  seenDone: number;
  lastProgressAt: number;
  startedAt: number;
  ready: boolean;
  gone: boolean;
}

/** How long ended workers get to flush their windows before they are cut off. */
const FLUSH_LIMIT_MS = 2_000;

/** The events at `pick` (ascending indexes) of a batch message. */
function subset(all: BatchMessage, pick: number[]): BatchMessage {
  const at = new Map(pick.map((from, to) => [from, to]));
  return {
    t: 'batch',
    buf: all.buf,
    starts: Uint32Array.from(pick, (i) => all.starts[i]!),
    ends: Uint32Array.from(pick, (i) => all.ends[i]!),
    container: Uint32Array.from(pick, (i) => all.container[i]!),
    containers: all.containers,
    extras: all.extras.flatMap(([i, x]) => (at.has(i) ? [[at.get(i)!, x] as [number, EventExtras]] : [])),
  };
}

export class IsolatedSignatures {
  private readonly runners: Runner[] = [];
  private readonly out = new Subject<Finding>();
  private readonly watchdog: NodeJS.Timeout;
  private ended = false;
  private completed = false;
  private cutOff: NodeJS.Timeout | undefined;
  /** Findings of the custom signatures as their workers post them; completes once every worker has closed or been stopped after end(). */
  readonly findings: Observable<Finding> = this.out.asObservable();

  constructor(
    readonly signatures: IsolatedSignature[],
    private readonly opts: IsolatedOptions,
  ) {
    for (const sig of signatures) this.runners.push(this.spawn(sig));
    const tick = Math.max(10, Math.min(100, opts.limits.eventBudgetMs / 4));
    this.watchdog = setInterval(() => this.check(), tick);
    this.watchdog.unref();
  }

  private spawn(sig: IsolatedSignature): Runner {
    const progress = new SharedArrayBuffer(4);
    const data: RunData = {
      mode: 'run',
      file: sig.module.file,
      index: sig.module.index,
      id: sig.id,
      hostname: this.opts.hostname,
      config: this.opts.config(sig.id),
      progress,
    };
    // stdout is the findings' JSONL when --jsonl -: a signature's console output goes to the log stream.
    const worker = new Worker(WORKER_URL, { workerData: data, resourceLimits: workerResourceLimits(this.opts.limits), stdout: true, stderr: true });
    const toLog = (chunk: Buffer): void => void process.stderr.write(chunk);
    worker.stdout.on('data', toLog);
    worker.stderr.on('data', toLog);
    const now = performance.now();
    const r: Runner = { sig, kinds: new Set(sig.events), worker, progress: new Int32Array(progress), sent: 0, seenDone: 0, lastProgressAt: now, startedAt: now, ready: false, gone: false };
    worker.on('message', (m: FromWorker) => this.received(r, m));
    worker.on('error', (err) => {
      const reason = endReason(err);
      this.stop(r, reason, reason === 'memory' ? `exceeded its memory limit (${this.opts.limits.memoryMb} MB heap)` : `crashed: ${err.message.split('\n')[0]}`);
    });
    worker.on('exit', (code) => this.stop(r, 'crashed', `its worker exited (code ${code})`));
    return r;
  }

  private received(r: Runner, m: FromWorker): void {
    if (r.gone) return;
    switch (m.t) {
      case 'ready':
        r.ready = true;
        r.lastProgressAt = performance.now();
        return;
      case 'failed':
        return this.stop(r, 'load', `could not start: ${m.reason}`);
      case 'log':
        return this.opts.log(m.msg);
      case 'found':
        this.count(m.counts);
        for (const f of m.findings) {
          // A worker speaks only for its own signature.
          if (f?.signature?.id !== r.sig.id) this.opts.metrics.inc('signature_errors_total', { signature: r.sig.id });
          else if (!this.completed) this.out.next(f);
        }
        return;
      case 'closed':
        this.count(m.counts);
        r.gone = true;
        void r.worker.terminate();
        return this.completeIfDone();
    }
  }

  private count(deltas: CounterDelta[]): void {
    for (const [name, labels, by] of deltas) this.opts.metrics.inc(name, labels, by);
  }

  private check(): void {
    const now = performance.now();
    const { eventBudgetMs, loadBudgetMs } = this.opts.limits;
    for (const r of this.runners) {
      if (r.gone) continue;
      if (!r.ready) {
        if (now - r.startedAt > loadBudgetMs) this.stop(r, 'time_budget', `did not start within ${loadBudgetMs} ms`);
        continue;
      }
      const done = Atomics.load(r.progress, 0);
      if (done !== r.seenDone || r.sent === done) {
        r.seenDone = done;
        r.lastProgressAt = now;
      } else if (now - r.lastProgressAt > eventBudgetMs) {
        this.stop(r, 'time_budget', `spent over ${eventBudgetMs} ms on one event (budget)`);
      }
    }
  }

  private stop(r: Runner, reason: StopReason, why: string): void {
    if (r.gone) return;
    r.gone = true;
    void r.worker.terminate();
    const signature = r.sig.id;
    const lost = r.sent - Atomics.load(r.progress, 0);
    if (lost > 0) this.opts.metrics.inc('signature_events_dropped_total', { signature }, lost);
    this.opts.metrics.inc('signature_stopped_total', { signature, reason });
    this.opts.metrics.inc('signatures_disabled_total', { signature });
    this.opts.log(`custom signature ${signature} (${r.sig.name}) stopped and disabled until the next reload: ${why}`);
    this.completeIfDone();
  }

  /** Posts the events of the batch to the workers that asked for their kinds. */
  send(batch: DetectionEvent[]): void {
    if (this.ended) return;
    let live = 0;
    const wanted = new Set<EventKindName>();
    for (const r of this.runners) if (!r.gone) (live++, r.kinds.forEach((k) => wanted.add(k)));
    if (!live) return;
    const events = batch.filter((ev) => wanted.has(ev.kind));
    if (!events.length) return;
    let bytes = 0;
    for (const ev of events) bytes += recordOf(ev).raw.length;
    // One copy of the records for every worker: they read the shared bytes.
    const buf = new SharedArrayBuffer(bytes);
    const view = Buffer.from(buf);
    const all: BatchMessage = {
      t: 'batch',
      buf,
      starts: new Uint32Array(events.length),
      ends: new Uint32Array(events.length),
      container: new Uint32Array(events.length),
      containers: [],
      extras: [],
    };
    const containerIndex = new Map<ContainerInfo, number>();
    let off = 0;
    for (let i = 0; i < events.length; i++) {
      const ev = events[i]!;
      const raw = recordOf(ev).raw;
      raw.copy(view, off);
      all.starts[i] = off;
      all.ends[i] = off += raw.length;
      let c = containerIndex.get(ev.container);
      if (c === undefined) containerIndex.set(ev.container, (c = all.containers.push(ev.container) - 1));
      all.container[i] = c;
      const parent = ev.kind === 'exec' ? ev.parentExecutable : undefined;
      const script = ev.kind === 'exec' ? ev.script : undefined;
      const interpreted = ev.kind === 'exec' ? ev.interpreted : undefined;
      const held = ev.kind === 'exec' ? ev.held : undefined;
      if (ev.file || parent !== undefined || script || interpreted || held) {
        const x: EventExtras = {};
        if (ev.file) x.file = ev.file;
        if (parent !== undefined) x.parentExecutable = parent;
        if (script) x.script = script;
        if (interpreted) x.interpreted = interpreted;
        if (held) x.held = held;
        all.extras.push([i, x]);
      }
    }
    for (const r of this.runners) {
      if (r.gone) continue;
      let msg = all;
      if (r.kinds.size < wanted.size) {
        const pick = events.flatMap((ev, i) => (r.kinds.has(ev.kind) ? [i] : []));
        if (!pick.length) continue;
        msg = subset(all, pick);
      }
      const n = msg.ends.length;
      if (r.sent - Atomics.load(r.progress, 0) + n > this.opts.limits.maxBacklog) {
        this.opts.metrics.inc('signature_events_dropped_total', { signature: r.sig.id }, n);
        continue;
      }
      r.sent += n;
      r.worker.postMessage(msg);
    }
  }

  /** Ends the workers' input: their stream windows flush, then findings completes. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const r of this.runners) if (!r.gone) r.worker.postMessage({ t: 'end' });
    this.cutOff = setTimeout(() => {
      for (const r of this.runners) if (!r.gone) this.stop(r, 'time_budget', `did not finish within ${FLUSH_LIMIT_MS} ms after its input ended`);
    }, FLUSH_LIMIT_MS + this.opts.limits.eventBudgetMs);
    this.cutOff.unref();
    this.completeIfDone();
  }

  private completeIfDone(): void {
    if (!this.ended || this.completed || this.runners.some((r) => !r.gone)) return;
    this.completed = true;
    clearInterval(this.watchdog);
    if (this.cutOff) clearTimeout(this.cutOff);
    this.out.complete();
  }
}
