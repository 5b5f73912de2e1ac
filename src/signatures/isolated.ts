// Custom signatures as the sensor runs them: each in its own worker thread,
// never imported into the thread that drains the kernel. Loading itself runs
// in a worker too (a module's top level can loop or hog memory as well as its
// onEvent), which answers with what each definition declares; the engine
// starts one worker per signature from that (pipeline/isolated-signatures.ts).
import { Worker } from 'node:worker_threads';
import { moduleFiles, type LoadError } from './load-custom.js';
import type { AnySignature, EventKindName, SignatureDefinition } from '../sdk/signature.js';

/** What a custom definition declares, and where it lives: the worker imports it again. */
export interface IsolatedSignature
  extends Pick<SignatureDefinition, 'id' | 'name' | 'version' | 'description' | 'severity' | 'mitre' | 'tags'> {
  events: EventKindName[];
  /** defineStreamSignature (detect) rather than defineSignature (onEvent). */
  stream: boolean;
  module: { file: string; index: number };
}

/** A signature the engine runs: built in (this thread) or custom (a worker). */
export type SensorSignature = AnySignature | IsolatedSignature;

export const isIsolated = (sig: SensorSignature): sig is IsolatedSignature => 'module' in sig && typeof (sig as IsolatedSignature).module?.file === 'string';

/** Limits of a custom signature's worker. */
export interface IsolationLimits {
  /** How long one event may take in one signature before its worker is stopped. */
  eventBudgetMs: number;
  /** How long a module may take to load. */
  loadBudgetMs: number;
  /** V8 old-generation heap of a worker (resourceLimits.maxOldGenerationSizeMb). */
  memoryMb: number;
  /** Events queued for one worker beyond which batches are dropped for it (counted). */
  maxBacklog: number;
}

export const DEFAULT_LIMITS: IsolationLimits = { eventBudgetMs: 500, loadBudgetMs: 10_000, memoryMb: 64, maxBacklog: 20_000 };

export const WORKER_URL = new URL('./isolated-worker.js', import.meta.url);

export function workerResourceLimits(limits: IsolationLimits): NonNullable<ConstructorParameters<typeof Worker>[1]>['resourceLimits'] {
  return { maxOldGenerationSizeMb: limits.memoryMb, maxYoungGenerationSizeMb: Math.max(4, Math.min(16, limits.memoryMb / 4)), stackSizeMb: 4 };
}

/** Why a worker ended, from its error: out of memory, or another crash. */
export function endReason(err: unknown): 'memory' | 'crashed' {
  return (err as { code?: string } | undefined)?.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'memory' : 'crashed';
}

interface Described {
  signatures: Array<Omit<IsolatedSignature, 'module'> & { index: number }>;
  errors: string[];
}

/** Imports one module in a throwaway worker and returns what it declares, or why it cannot load. */
function describe(file: string, limits: IsolationLimits): Promise<Described> {
  return new Promise((resolve) => {
    const worker = new Worker(WORKER_URL, { workerData: { mode: 'describe', file }, resourceLimits: workerResourceLimits(limits), stdout: false, stderr: false });
    let settled = false;
    const settle = (d: Described): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(d);
    };
    const timer = setTimeout(() => settle({ signatures: [], errors: [`did not load within ${limits.loadBudgetMs} ms (stopped)`] }), limits.loadBudgetMs);
    worker.once('message', (m: Described) => settle(m));
    worker.once('error', (err) =>
      settle({ signatures: [], errors: [endReason(err) === 'memory' ? `ran out of memory while loading (${limits.memoryMb} MB)` : (err.message.split('\n')[0] ?? String(err))] }),
    );
    worker.once('exit', (code) => settle({ signatures: [], errors: [`exited while loading (code ${code})`] }));
  });
}

/**
 * Loads the custom modules that `paths` name (files or directories), each in
 * a worker within the limits. Bad modules are reported with the file and the
 * reason and left out; `taken` holds ids already in use (built-ins).
 */
export async function loadIsolatedSignatures(
  paths: string | string[],
  taken: Set<string>,
  limits: IsolationLimits = DEFAULT_LIMITS,
): Promise<{ signatures: IsolatedSignature[]; errors: LoadError[] }> {
  const errors: LoadError[] = [];
  const files = moduleFiles(typeof paths === 'string' ? [paths] : paths, errors);
  const described = await Promise.all(files.map((f) => describe(f, limits)));
  const signatures: IsolatedSignature[] = [];
  files.forEach((file, i) => {
    const d = described[i]!;
    for (const reason of d.errors) errors.push({ file, reason });
    for (const { index, ...sig } of d.signatures) {
      if (taken.has(sig.id)) {
        errors.push({ file, reason: `duplicate signature id ${sig.id}` });
        continue;
      }
      taken.add(sig.id);
      signatures.push({ ...sig, module: { file, index } });
    }
  });
  return { signatures, errors };
}
