// The thread a custom signature runs in. `describe`: import a module and say
// what it defines. `run`: import it, run one of its signatures in an engine
// of its own over the batches the sensor posts, and post back its findings and
// counters. Progress (events done) is a shared counter, so the sensor sees a
// signature that stops making progress even while this thread cannot answer.
import { parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import type { ContainerInfo } from '../pipeline/container.js';
import { decodeRecord } from '../pipeline/decode.js';
import { SignatureEngine } from '../pipeline/engine.js';
import { BootClock, type Finding } from '../pipeline/finding.js';
import type { Labels } from '../pipeline/metrics.js';
import { invalidSignature, resolveSdkImports } from './load-custom.js';
import { isStreamSignature, type AnySignature, type DetectionEvent, type FileFacts, type HoldOutcome, type InterpretedScript, type ScriptFacts } from '../sdk/signature.js';

/** Enrichment beyond the container, for the events that have any. */
export interface EventExtras {
  parentExecutable?: string;
  file?: FileFacts;
  script?: ScriptFacts;
  interpreted?: InterpretedScript;
  held?: HoldOutcome;
}

/**
 * A batch: record i is buf[starts[i], ends[i]) in one shared buffer, its
 * container containers[container[i]] (a batch has few containers; each is
 * cloned once), the rest of its enrichment in extras, by index.
 */
export interface BatchMessage {
  t: 'batch';
  buf: SharedArrayBuffer;
  starts: Uint32Array;
  ends: Uint32Array;
  container: Uint32Array;
  containers: ContainerInfo[];
  extras: Array<[index: number, extras: EventExtras]>;
}

export type ToWorker = BatchMessage | { t: 'end' };

export type CounterDelta = [name: string, labels: Labels, by: number];

export type FromWorker =
  | { t: 'ready' }
  | { t: 'failed'; reason: string }
  | { t: 'found'; findings: Finding[]; counts: CounterDelta[] }
  | { t: 'log'; msg: string }
  | { t: 'closed'; counts: CounterDelta[] };

export interface RunData {
  mode: 'run';
  file: string;
  index: number;
  id: string;
  hostname: string;
  config: Record<string, unknown>;
  /** Int32 [events done]. */
  progress: SharedArrayBuffer;
}

async function definitions(file: string): Promise<unknown[]> {
  resolveSdkImports();
  const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  return Array.isArray(mod.default) ? mod.default : [mod.default];
}

async function describe(file: string): Promise<void> {
  const errors: string[] = [];
  const signatures: unknown[] = [];
  let defs: unknown[] = [];
  try {
    defs = await definitions(file);
  } catch (err) {
    errors.push((err as Error).message?.split('\n')[0] ?? String(err));
  }
  defs.forEach((def, index) => {
    const why = invalidSignature(def);
    if (why) return void errors.push(why);
    const s = def as AnySignature;
    signatures.push({
      id: s.id,
      name: s.name,
      version: String(s.version ?? ''),
      description: String(s.description ?? ''),
      severity: s.severity,
      ...(s.mitre ? { mitre: { technique: String(s.mitre.technique), tactic: String(s.mitre.tactic) } } : {}),
      ...(Array.isArray(s.tags) ? { tags: s.tags.map(String) } : {}),
      events: [...s.events],
      stream: isStreamSignature(s),
      index,
    });
  });
  parentPort!.postMessage({ signatures, errors });
}

async function run(data: RunData): Promise<void> {
  const port = parentPort!;
  const post = (m: FromWorker): void => port.postMessage(m);
  let sig: AnySignature;
  try {
    const def = (await definitions(data.file))[data.index];
    const why = invalidSignature(def);
    if (why) throw new Error(why);
    sig = def as AnySignature;
    if (sig.id !== data.id) throw new Error(`the module now defines ${sig.id} where ${data.id} was`);
  } catch (err) {
    return post({ t: 'failed', reason: (err as Error).message?.split('\n')[0] ?? String(err) });
  }
  const pending = new Map<string, CounterDelta>();
  const counters = {
    inc(name: string, labels: Labels = {}, by = 1): void {
      const key = name + JSON.stringify(labels);
      const d = pending.get(key);
      if (d) d[2] += by;
      else pending.set(key, [name, labels, by]);
    },
  };
  const drain = (): CounterDelta[] => {
    const out = [...pending.values()];
    pending.clear();
    return out;
  };
  const engine = new SignatureEngine([sig], {
    hostname: data.hostname,
    clock: new BootClock(),
    metrics: counters,
    log: (msg) => post({ t: 'log', msg }),
    config: () => data.config,
  });
  const progress = new Int32Array(data.progress);
  engine.streamFindings.subscribe({
    next: (f) => post({ t: 'found', findings: [f], counts: drain() }),
    complete: () => post({ t: 'closed', counts: drain() }),
  });
  port.on('message', (m: ToWorker) => {
    if (m.t === 'end') return engine.close();
    const findings: Finding[] = [];
    const extras = new Map(m.extras);
    for (let i = 0; i < m.ends.length; i++) {
      const start = m.starts[i]!;
      const record = decodeRecord(Buffer.from(m.buf, start, m.ends[i]! - start));
      const side = { container: m.containers[m.container[i]!]!, ...extras.get(i) };
      const ev = (record.kind === 'exec' ? { kind: 'exec', exec: record, ...side } : { kind: 'mmap_exec', mmap: record, ...side }) as DetectionEvent;
      try {
        for (const f of engine.dispatch(ev)) findings.push(f);
      } finally {
        Atomics.add(progress, 0, 1);
      }
    }
    if (findings.length || pending.size) post({ t: 'found', findings, counts: drain() });
  });
  post({ t: 'ready' });
}

const data = workerData as { mode: 'describe'; file: string } | RunData;
if (data.mode === 'describe') void describe(data.file);
else void run(data);
