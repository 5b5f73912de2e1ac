// The sensor: kernel → native → decode → enrich → signatures → sinks.
import { hostname as osHostname } from 'node:os';
import { EMPTY, Subscription, catchError, tap } from 'rxjs';
import type { MetadataResolver } from '../enrich/metadata.js';
import type { Logger } from '../log.js';
import { loadWithScriptHook, type NativeLoader } from '../native/loader.js';
import { builtinSignatures } from '../signatures/index.js';
import type { AnySignature, DetectionEvent } from '../signatures/sdk.js';
import { DEFAULT_POLICY, type Policy } from '../policy/config.js';
import { PolicyStage } from '../policy/policy.js';
import { readHostNamespaces, type HostNamespaces } from './container.js';
import { decodeBatch, type DecodedEvent } from './decode.js';
import { SignatureEngine } from './engine.js';
import { createEnricher } from './enrich.js';
import { BootClock, type Finding } from './finding.js';
import { Metrics } from './metrics.js';
import { KERNEL_STATS } from './records.js';
import type { Sink } from './sinks.js';
import { drainOnce, kernelBatches, type Batch } from './source.js';

export interface SensorOptions {
  log: Logger;
  sinks: Sink[];
  includeHost?: boolean;
  emitAll?: boolean;
  signatures?: AnySignature[];
  policy?: Policy;
  /** Injected in tests; by default the real addon is opened, loaded and attached here. */
  loader?: NativeLoader;
  hostNamespaces?: HostNamespaces;
  resolver?: MetadataResolver;
  hostname?: string;
  pollIntervalMs?: number;
  metrics?: Metrics;
  /** How often kernel counters are checked for conditions worth a log line. */
  kernelCheckMs?: number;
}

export interface Sensor {
  attached: string[];
  readonly signatures: AnySignature[];
  /** Swaps signatures and/or policy between two events; nothing in flight is lost. */
  reload(next: { signatures?: AnySignature[]; policy?: Policy }): void;
  metrics: Metrics;
  loader: NativeLoader;
  stop(): Promise<void>;
}

/** The exec hook is required; the others degrade detection, loudly, when they cannot attach. */
const REQUIRED_PROGRAMS = new Set(['sched_process_exec']);

function attachPrograms(loader: NativeLoader, log: Logger, metrics: Metrics): string[] {
  const attached: string[] = [];
  for (const name of loader.programs()) {
    try {
      attached.push(loader.attachProgram(name));
    } catch (err) {
      if (REQUIRED_PROGRAMS.has(name)) throw err;
      metrics.inc('hooks_unavailable_total', { program: name });
      log.warn(`optional hook ${name} not attached (${(err as Error).message}); its detections are off`);
    }
  }
  return attached;
}

export async function startSensor(opts: SensorOptions): Promise<Sensor> {
  const metrics = opts.metrics ?? new Metrics();
  const log = opts.log;
  const hostname = opts.hostname ?? osHostname();
  let host = opts.hostNamespaces;
  if (!host) {
    const read = readHostNamespaces();
    if (read.source === 'self') log.info('PID 1 cannot be inspected; using this process\'s namespaces as the host\'s');
    host = read;
  }
  const policy = opts.policy ?? DEFAULT_POLICY;
  const emitToSinks = (f: Finding): void => {
    for (const sink of opts.sinks) {
      try {
        sink.write(f);
      } catch (err) {
        metrics.inc('sink_errors_total');
        log.warn(`sink failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  };
  const policyStage = new PolicyStage(policy, metrics, emitToSinks);
  const clock = new BootClock();
  const makeEngine = (sigs: AnySignature[], pol: Policy) =>
    new SignatureEngine(
      sigs.filter((s) => pol.signatures[s.id]?.enabled !== false),
      { hostname, clock, metrics, log: (m) => log.warn(m), config: (id) => pol.signatures[id]?.config ?? {} },
    );
  let engine = makeEngine(opts.signatures ?? builtinSignatures, policy);
  // Zero-valued series exist from the start, so rate() and absent() alerts work before the first drop.
  for (const name of ['events_decoded_total', 'decode_errors_total', 'host_events_dropped_total', 'pipeline_errors_total', 'sink_errors_total', 'reloads_total']) {
    metrics.inc(name, {}, 0);
  }
  for (const kind of ['exec', 'mmap_exec']) metrics.inc('events_total', { kind }, 0);
  for (const s of engine.signatures) metrics.inc('findings_total', { signature: s.id }, 0);
  const enricher = createEnricher({ host, metrics, ...(opts.resolver ? { resolver: opts.resolver } : {}) });

  let loader = opts.loader;
  let attached: string[] = [];
  if (!loader) {
    // 2 MiB holds ~6,000 full records: 60 ms of a 100k exec/s burst between 10 ms polls.
    const loaded = loadWithScriptHook({ emitAll: opts.emitAll ?? false, ignoreTgid: process.pid, hostMntNs: host.mnt, hostPidNs: host.pid, ringBufferBytes: 2 << 20 });
    loader = loaded.loader;
    for (const r of loaded.refused) metrics.inc('hooks_unavailable_total', { program: `${r.hook}_bprm_check` });
    log.info(
      loaded.scriptHook === 'none'
        ? `script layers: looked up in the container's overlay (no bprm_check hook here: ${loaded.refused.map((r) => `${r.hook} ${r.reason}`).join(', ')})`
        : `script layers: from the kernel (${loaded.scriptHook} bprm_check)`,
    );
    try {
      attached = attachPrograms(loader, log, metrics);
    } catch (err) {
      loader.close();
      throw err;
    }
  }
  const kernel = loader;
  for (const name of KERNEL_STATS) metrics.gauge(`kernel_${name}`, () => kernel.stats()[name] ?? 0);
  // Overlay's types were unknown when the object loaded (the module came
  // later and could not be loaded up front): upper-layer files cannot be told
  // from image files until a restart. Say so once; the counter keeps the number.
  const unresolvedCheck = setInterval(() => {
    let n = 0;
    try {
      n = kernel.stats()['ovl_unresolved'] ?? 0;
    } catch {
      return; // closed
    }
    if (n > 0) {
      clearInterval(unresolvedCheck);
      log.warn(`${n} exec(s) from overlayfs whose types were not known when the sensor loaded (overlay was not loaded then): restart the sensor to classify container layers`);
    }
  }, opts.kernelCheckMs ?? 5_000);
  unresolvedCheck.unref();
  const resolver = opts.resolver;
  if (resolver) {
    for (const name of Object.keys(resolver.metrics) as Array<keyof typeof resolver.metrics>) {
      metrics.gauge(`enrichment_${name}`, () => resolver.metrics[name]);
    }
    metrics.gauge('enrichment_cache_entries', () => resolver.size);
  }

  const decode = (b: Batch): DecodedEvent[] => {
    const { events, errors } = decodeBatch(b.buf, b.length);
    metrics.inc('events_decoded_total', {}, events.length);
    let mmaps = 0;
    for (const e of events) if (e.kind === 'mmap_exec') mmaps++;
    if (events.length > mmaps) metrics.inc('events_total', { kind: 'exec' }, events.length - mmaps);
    if (mmaps) metrics.inc('events_total', { kind: 'mmap_exec' }, mmaps);
    if (errors.length) {
      metrics.inc('decode_errors_total', {}, errors.length);
      log.debug(`dropped ${errors.length} malformed record(s): ${errors[0]}`);
    }
    return events;
  };

  const emit = (findings: Finding[]): void => {
    for (const f of findings) policyStage.apply(f);
  };

  const judge = (ev: DetectionEvent): void => {
    if (!ev.container.inContainer && !opts.includeHost) {
      metrics.inc('host_events_dropped_total');
      return;
    }
    emit(engine.dispatch(ev));
  };
  /** Synchronous unless enrichment has something to look up; then the promise is tracked. */
  const handle = (rec: DecodedEvent): void => {
    const ev = enricher.enrich(rec);
    if (ev instanceof Promise) void track(ev.then(judge));
    else judge(ev);
  };

  const inflight = new Set<Promise<void>>();
  metrics.gauge('enrichment_inflight', () => inflight.size);
  const track = (p: Promise<void>): Promise<void> => {
    inflight.add(p);
    return p.finally(() => inflight.delete(p));
  };

  let sub: Subscription | undefined;
  const run = (): void => {
    sub = kernelBatches(kernel, { intervalMs: opts.pollIntervalMs ?? 10 })
      .pipe(
        // synchronous: the batch buffer is reused after this returns
        tap((b) => {
          for (const rec of decode(b)) handle(rec);
        }),
        catchError((err: unknown) => {
          metrics.inc('pipeline_errors_total');
          log.error(`pipeline error, restarting the stream: ${err instanceof Error ? err.message : String(err)}`);
          setTimeout(run, 100);
          return EMPTY;
        }),
      )
      .subscribe();
  };
  run();

  let stopped = false;
  return {
    attached,
    get signatures() {
      return engine.signatures;
    },
    reload(next) {
      const pol = next.policy ?? policy;
      const old = engine;
      engine = makeEngine(next.signatures ?? old.signatures, pol);
      policyStage.replace(pol);
      old.close();
      metrics.inc('reloads_total');
    },
    metrics,
    loader: kernel,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(unresolvedCheck);
      sub?.unsubscribe();
      try {
        drainOnce(kernel, (b) => {
          for (const rec of decode(b)) handle(rec);
        });
      } catch (err) {
        log.warn(`final drain failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      await Promise.allSettled([...inflight]);
      policyStage.flush();
      engine.close();
      for (const s of opts.sinks) await s.close();
      if (!opts.loader) kernel.close();
    },
  };
}
